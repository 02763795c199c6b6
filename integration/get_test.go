//go:build linux

package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// Tests of `appliveryfs get`, run as the binary, against the emulator.

// get runs `appliveryfs get ARGS` against emu with a fresh cache
// directory, unless ARGS name one.
func get(t *testing.T, emu *emulator.Server, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	args = append(append([]string{"get"}, args...), hostArgs(emu)...)
	if !contains(args, "--cache-dir") {
		args = append(args, "--cache-dir", t.TempDir())
	}
	return cli(t, token, args...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// onlyFile checks that dir holds exactly one file, name, with data.
func onlyFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != name {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %q, want only %s", dir, names, name)
		return
	}
	if got := readAll(t, filepath.Join(dir, name)); !bytes.Equal(got, data) {
		t.Errorf("%s: %d bytes, sha256 %s; want %d bytes, sha256 %s", name, len(got), sha256Hex(got), len(data), sha256Hex(data))
	}
}

// emptyDir checks that a failed get left nothing in dir: no file under
// the final name, no temporary file.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("a failed get left %s in %s", e.Name(), dir)
	}
}

// TestGetEveryFile gets every file of the sample data into a directory:
// the name is the one the mount shows, the bytes are storage's, and
// stderr, a pipe here, gets no progress output.
func TestGetEveryFile(t *testing.T) {
	emu := startEmulator(t, nil)
	cacheDir := t.TempDir()
	seen := map[string]bool{}
	nightly := 0
	for _, e := range expectedFiles(emu) {
		if e.appData.Slug == "nightly" {
			if nightly++; nightly > 2 {
				continue // 130 builds alike: two say as much
			}
		}
		seen[e.name] = true
		dir := t.TempDir()
		path := e.org.Slug + "/" + e.appData.Slug + "/" + e.build.ID + "/" + e.typ
		out, errOut, code := get(t, emu, emu.Token(), path, "-o", dir, "--cache-dir", cacheDir)
		if code != 0 || out != "" || errOut != "" {
			t.Errorf("get %s: exit %d, stdout %q, stderr %q; want 0 and nothing printed", path, code, out, errOut)
			continue
		}
		onlyFile(t, dir, e.name, e.data)
	}
	for _, name := range []string{"file.apk", "auto.apk", "aab.aab", "file.ipa", "auto.plist", "file.pkg"} {
		if !seen[name] {
			t.Errorf("the sample data has no %s: the test covers less than it says", name)
		}
	}

	// No TYPE means file; -o FILE, -o - and a mount name (file.ipa) work.
	ios := findBuild(t, emu, "acme", "field-ios", "3.1.0")
	want, _ := emu.Object(ios.ID, "file")
	dest := filepath.Join(t.TempDir(), "FieldApp-3.1.0.ipa")
	if _, errOut, code := get(t, emu, emu.Token(), "acme/field-ios/"+ios.ID, "-o", dest); code != 0 {
		t.Errorf("get -o FILE: exit %d: %s", code, errOut)
	}
	onlyFile(t, filepath.Dir(dest), filepath.Base(dest), want)
	out, errOut, code := get(t, emu, emu.Token(), "acme/field-ios/"+ios.ID+"/file.ipa", "-o", "-")
	if code != 0 || errOut != "" || out != string(want) {
		t.Errorf("get -o -: exit %d, %d bytes on stdout (want %d), stderr %q", code, len(out), len(want), errOut)
	}
	if _, errOut, code := get(t, emu, emu.Token(), "acme/field-ios/"+ios.ID+"/file.apk", "-o", t.TempDir()); code != 4 {
		t.Errorf("get of file.apk of an iOS build: exit %d, want 4 (not found): %s", code, errOut)
	}
	// Without -o: the current directory.
	dir := t.TempDir()
	cmd := exec.Command(binPath, append([]string{"get", "acme/field-ios/" + ios.ID, "--cache-dir", t.TempDir()}, hostArgs(emu)...)...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("get without -o: %v: %s", err, b)
	}
	onlyFile(t, dir, "file.ipa", want)
}

// TestGetFromCache: a second get of the same build, with the same cache
// directory, mints no token and reads no storage byte; so does a mount.
func TestGetFromCache(t *testing.T) {
	emu := startEmulator(t, nil)
	cacheDir := t.TempDir()
	ios := findBuild(t, emu, "acme", "field-ios", "3.1.0")
	for _, typ := range []string{"file", "auto"} { // auto: an OTA manifest, whose size the API does not give
		want, _ := emu.Object(ios.ID, typ)
		path := "acme/field-ios/" + ios.ID + "/" + typ
		if _, errOut, code := get(t, emu, emu.Token(), path, "-o", t.TempDir(), "--cache-dir", cacheDir); code != 0 {
			t.Fatalf("first get %s: exit %d: %s", path, code, errOut)
		}
		emu.ResetCounters()
		dir := t.TempDir()
		if _, errOut, code := get(t, emu, emu.Token(), path, "-o", dir, "--cache-dir", cacheDir); code != 0 {
			t.Fatalf("second get %s: exit %d: %s", path, code, errOut)
		}
		onlyFile(t, dir, typ+"."+map[string]string{"file": "ipa", "auto": "plist"}[typ], want)
		if c := emu.Counters(); c.TokensMinted != 0 || c.StorageBytes != 0 || c.StorageRequests != 0 {
			t.Errorf("second get %s: %d tokens, %d storage requests, %d storage bytes; want none",
				path, c.TokensMinted, c.StorageRequests, c.StorageBytes)
		}
	}
	// The cache is the mount's: a mount on it serves the build from disk.
	m := mount(t, emu, mountConfig{cacheDir: cacheDir, diskBytes: 10 << 30})
	emu.ResetCounters()
	want, _ := emu.Object(ios.ID, "file")
	if got := readAll(t, m.path("acme", "field-ios", ios.ID, "file.ipa")); !bytes.Equal(got, want) {
		t.Errorf("mount on the get's cache: wrong bytes")
	}
	if c := emu.Counters(); c.TokensMinted != 0 || c.StorageBytes != 0 {
		t.Errorf("mount on the get's cache: %d tokens, %d storage bytes; want none", c.TokensMinted, c.StorageBytes)
	}
}

// TestGetNames: latest, versions/ and tags/ resolve as in the mounted tree.
func TestGetNames(t *testing.T) {
	emu := startEmulator(t, nil)
	b240 := findBuild(t, emu, "acme", "field-app", "2.4.0") // latest: the newer builds are pending and failed
	apk, _ := emu.Object(b240.ID, "file")
	aab, _ := emu.Object(b240.ID, "aab")
	cacheDir := t.TempDir()
	for path, want := range map[string]struct {
		name string
		data []byte
	}{
		"acme/field-app/latest":                        {"file.apk", apk},
		"acme/field-app/latest/aab":                    {"aab.aab", aab},
		"acme/field-app/versions/2.4.0/file":           {"file.apk", apk},
		"acme/field-app/versions/2.4.0+240":            {"file.apk", apk},
		"acme/field-app/tags/qa/latest/file":           {"file.apk", apk},
		"acme/field-app/tags/release/" + b240.ID:       {"file.apk", apk},
		"acme/field-app/tags/release/" + b240.ID + "/": {"file.apk", apk},
		"acme/field-app/tags/qa/latest/aab.aab":        {"aab.aab", aab},
	} {
		dir := t.TempDir()
		if _, errOut, code := get(t, emu, emu.Token(), path, "-o", dir, "--cache-dir", cacheDir); code != 0 {
			t.Errorf("get %s: exit %d: %s", path, code, errOut)
			continue
		}
		onlyFile(t, dir, want.name, want.data)
	}
}

// TestGetExitCodes: each failure has its documented status and one line
// on stderr that never shows the token, and leaves no file.
func TestGetExitCodes(t *testing.T) {
	emu := startEmulator(t, nil)
	statuses := map[string]*emulator.Build{}
	for _, a := range emu.Data().Orgs[0].Apps {
		for _, b := range a.Builds {
			if statuses[b.Status] == nil {
				statuses[b.Status] = b
			}
		}
	}
	apk := findBuild(t, emu, "acme", "field-app", "2.3.0") // an .apk upload: no aab
	for _, tc := range []struct {
		name, token, path string
		code              int
		want              string
	}{
		{"wrong token", "not-the-token", "acme/field-app/latest", 3, "401"},
		{"unknown org", emu.Token(), "no-such-org/field-app/latest", 4, "not found"},
		{"unknown app", emu.Token(), "acme/no-such-app/latest", 4, "not found"},
		{"unknown build", emu.Token(), "acme/field-app/" + emulator.NewID(), 4, "not found"},
		{"unknown name", emu.Token(), "acme/field-app/nope", 4, "not found"},
		{"unknown version", emu.Token(), "acme/field-app/versions/9.9.9", 4, "versions/9.9.9: not found"},
		{"unknown tag", emu.Token(), "acme/field-app/tags/nope/latest", 4, "tags/nope/latest: not found"},
		{"no such type", emu.Token(), "acme/field-app/" + apk.ID + "/aab", 4, "no file aab"},
		{"pending build", emu.Token(), "acme/field-app/" + statuses["pending"].ID, 5, "not processed yet"},
		{"build in progress", emu.Token(), "acme/field-ios/" + statuses["in_progress"].ID + "/file", 5, "not processed yet"},
		{"failed build", emu.Token(), "acme/field-app/" + statuses["error"].ID, 1, "failed processing"},
		{"bad path", emu.Token(), "acme/field-app", 2, "bad path"},
		{"bad type", emu.Token(), "acme/field-app/latest/icon", 2, "bad path"},
		{"versions without a name", emu.Token(), "acme/field-app/versions", 2, "bad path"},
	} {
		dir := t.TempDir()
		emu.ResetCounters()
		_, errOut, code := get(t, emu, tc.token, tc.path, "-o", dir)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tc.name, code, errOut, tc.code, tc.want)
		}
		if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines != 1 && tc.code != 2 {
			t.Errorf("%s: %d lines on stderr, want 1:\n%s", tc.name, lines, errOut)
		}
		if strings.Contains(errOut, tc.token) {
			t.Errorf("%s: stderr shows the token", tc.name)
		}
		if c := emu.Counters(); c.TokensMinted != 0 {
			t.Errorf("%s: %d tokens minted, want none", tc.name, c.TokensMinted)
		}
		emptyDir(t, dir)
	}
	if out, errOut, code := cli(t, "", "get", "--help"); code != 0 || !strings.Contains(out+errOut, "5    build not processed yet") {
		t.Errorf("get --help: exit %d, and the exit statuses are not documented:\n%s%s", code, out, errOut)
	}
}

// startGet starts `appliveryfs get ARGS` against emu in the background.
func startGet(t *testing.T, emu *emulator.Server, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binPath, append(append([]string{"get"}, args...), hostArgs(emu)...)...)
	cmd.Dir, cmd.Env = os.TempDir(), append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, &stderr
}

// waitFetched waits until storage has served at least n bytes.
func waitFetched(t *testing.T, emu *emulator.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for emu.Counters().StorageBytes < n {
		if time.Now().After(deadline) {
			t.Fatalf("storage served %d bytes in 20 s, want %d", emu.Counters().StorageBytes, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGetNoPartialFile: a get that fails after storage served part of the
// file leaves nothing under the final name, nor a temporary file.
func TestGetNoPartialFile(t *testing.T) {
	const size = 8 << 20
	data, big := bigIPAData(t, size, 20)
	emu := startEmulator(t, data)

	// Storage failing until --io-timeout, once the first blocks arrived.
	emu.SetBandwidth(256 << 10)
	dir := t.TempDir()
	cmd, stderr := startGet(t, emu, "acme/field-ios/"+big.ID, "-o", dir, "--cache-dir", t.TempDir(),
		"--io-timeout", "2s", "--block-size", "256K")
	waitFetched(t, emu, 1<<20)
	emu.SetFaults(emulator.Faults{StorageStatus: 503})
	emu.SetBandwidth(0)
	if code := waitExit(t, cmd, 30*time.Second); code != 1 || !strings.Contains(stderr.String(), "503") {
		t.Errorf("get with storage failing: exit %d, stderr %q; want 1 and the 503", code, stderr.String())
	}
	emu.SetFaults(emulator.Faults{})
	emptyDir(t, dir)

	// A checksum mismatch: the blocks on disk are the old bytes, the API's
	// checksum is of the new ones. A file already at the destination stays.
	ios := findBuild(t, emu, "acme", "field-ios", "3.1.0")
	path := "acme/field-ios/" + ios.ID
	cacheDir := t.TempDir()
	dir = t.TempDir()
	if _, errOut, code := get(t, emu, emu.Token(), path, "-o", dir, "--cache-dir", cacheDir); code != 0 {
		t.Fatalf("get: exit %d: %s", code, errOut)
	}
	old := readAll(t, filepath.Join(dir, "file.ipa"))
	if err := emu.MutateObject(ios.ID, "file"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := get(t, emu, emu.Token(), path, "-o", dir, "--cache-dir", cacheDir)
	if code != 1 || !strings.Contains(errOut, "checksum") {
		t.Errorf("get of bytes that fail the checksum: exit %d, stderr %q; want 1", code, errOut)
	}
	onlyFile(t, dir, "file.ipa", old)
	// The bad blocks were dropped: the next get fetches the new bytes.
	now, _ := emu.Object(ios.ID, "file")
	dir = t.TempDir()
	if _, errOut, code := get(t, emu, emu.Token(), path, "-o", dir, "--cache-dir", cacheDir); code != 0 {
		t.Fatalf("get after the mismatch: exit %d: %s", code, errOut)
	}
	onlyFile(t, dir, "file.ipa", now)
}

// TestGetInterrupted: SIGINT removes the partial file and exits 130; the
// rerun continues from the blocks already in the disk cache.
func TestGetInterrupted(t *testing.T) {
	const size = 16 << 20
	data, b := bigIPAData(t, size, 20)
	emu := startEmulator(t, data)
	want, _ := emu.Object(b.ID, "file")
	emu.SetBandwidth(256 << 10) // per connection: several seconds for the file
	dir := t.TempDir()
	args := []string{"acme/field-ios/" + b.ID, "-o", dir, "--cache-dir", t.TempDir(), "--block-size", "256K"}
	cmd, stderr := startGet(t, emu, args...)
	waitFetched(t, emu, 8<<20)
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, cmd, 15*time.Second); code != 130 {
		t.Errorf("get after SIGINT: exit %d, want 130: %s", code, stderr.String())
	}
	if got := stderr.String(); !strings.Contains(got, "interrupted") || strings.Count(got, "\n") != 1 {
		t.Errorf("get after SIGINT: stderr %q, want one line saying interrupted", got)
	}
	fetched := emu.Counters().StorageBytes
	if fetched >= size {
		t.Fatalf("get had fetched the whole file before SIGINT: the test proves nothing")
	}
	emptyDir(t, dir)

	emu.SetBandwidth(0)
	emu.ResetCounters()
	if _, errOut, code := get(t, emu, emu.Token(), args...); code != 0 {
		t.Fatalf("get again: exit %d: %s", code, errOut)
	}
	onlyFile(t, dir, "file.ipa", want)
	// Blocks being fetched when the signal came are fetched again (at most
	// the prefetch window of 16 and the block read: 17 of 256 KiB, each
	// partly fetched); the ones done by then are not.
	inFlight := int64(17 * 256 << 10)
	if again := emu.Counters().StorageBytes; again > size-(fetched-inFlight) {
		t.Errorf("rerun fetched %d of %d bytes after %d before SIGINT: it did not continue from the disk cache",
			again, size, fetched)
	}
}

// TestGetWithoutDevFuse runs get where there is no /dev/fuse (nor any
// other device): a container without --device /dev/fuse.
func TestGetWithoutDevFuse(t *testing.T) {
	emu := startEmulator(t, nil)
	e := expectedFiles(emu)[0]
	dir := t.TempDir()
	args := append([]string{"--mount", "sh", "-c", `mount -t tmpfs tmpfs /dev && ! test -e /dev/fuse && exec "$0" "$@"`,
		binPath, "get", e.org.Slug + "/" + e.appData.Slug + "/" + e.build.ID + "/" + e.typ, "-o", dir,
		"--cache-dir", t.TempDir()}, hostArgs(emu)...)
	cmd := exec.Command("unshare", args...)
	cmd.Dir, cmd.Env = os.TempDir(), append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("get without /dev: %v: %s", err, out)
	}
	onlyFile(t, dir, e.name, e.data)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Errorf("the test's own /dev changed: %v", err)
	}
}

// TestGetProgressOnTerminal: with stderr a terminal, get shows a progress
// bar of bytes, rate and time left; --quiet shows nothing.
func TestGetProgressOnTerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no script(1) to give get a terminal")
	}
	emu := startEmulator(t, nil)
	ios := findBuild(t, emu, "acme", "field-ios", "3.1.0")
	for _, quiet := range []bool{false, true} {
		dir := t.TempDir()
		line := strings.Join(append([]string{binPath, "get", "acme/field-ios/" + ios.ID, "-o", dir, "--cache-dir", t.TempDir()},
			hostArgs(emu)...), " ")
		if quiet {
			line += " --quiet"
		}
		cmd := exec.Command("script", "-qec", line+" >/dev/null", "/dev/null")
		cmd.Dir, cmd.Env = os.TempDir(), append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token(), "COLUMNS=100")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("get on a terminal: %v: %q", err, out)
		}
		shown := strings.Contains(string(out), "file.ipa") && strings.Contains(string(out), "100%") &&
			strings.Contains(string(out), "MiB")
		if shown == quiet {
			t.Errorf("get on a terminal, quiet %v: output %q", quiet, out)
		}
		if quiet && len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("get --quiet on a terminal printed %q", out)
		}
	}
}
