//go:build linux

package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// TestVerdictAfterSlowRefetch: a file larger than the memory budget read
// backwards through the mount, with a short --io-timeout and slow storage.
// Blocks are evicted before they are hashed, so the read that completes
// the file waits for the checksum to refetch them: that wait must not fail
// the correct file on --io-timeout, as it did (EIO, "context deadline
// exceeded", 57 fetches for 32 blocks).
func TestVerdictAfterSlowRefetch(t *testing.T) {
	data, b := bigIPAData(t, 8<<20, 20)
	emu := startEmulator(t, data)
	emu.SetLatency(150 * time.Millisecond)
	m := mount(t, emu, mountConfig{blockSize: 256 << 10, memBytes: 2 << 20, ioTimeout: 300 * time.Millisecond})
	want, _ := emu.Object(b.ID, "file")
	f, err := os.Open(m.path("acme", "field-ios", b.ID, "file.ipa"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	const chunk = 256 << 10
	for off := (len(want) - 1) / chunk * chunk; off >= 0; off -= chunk {
		end := min(off+chunk, len(want))
		if _, err := f.ReadAt(got[off:end], int64(off)); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("wrong bytes")
	}
	if st := m.cache.Stats(); st.Verified != 1 {
		t.Errorf("verified %d files, want 1", st.Verified)
	}
}

// TestDeletedBuildGoes: a build deleted on Applivery leaves the tree after
// --dir-ttl, whether a listing showed it or it was looked up by id before
// any listing did (those were kept for the life of the mount).
func TestDeletedBuildGoes(t *testing.T) {
	emu := startEmulator(t, nil)
	const ttl = time.Second
	m := mount(t, emu, mountConfig{dirTTL: ttl})
	listDir(t, m.path("acme", "field-app")) // the listing, before the new build
	nb := &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "android", BuildPlatform: "android",
		VersionName: "9.9.9", VersionCode: "999", OriginalExtension: "apk", CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		Objects: map[string]*emulator.Object{"file": {Name: "new.apk", Data: []byte("PK\x05\x06 bytes")}}}
	if err := emu.Data().AddBuild("acme", "field-app", nb); err != nil {
		t.Fatal(err)
	}
	listed := findBuild(t, emu, "acme", "field-app", "2.3.0")
	for _, id := range []string{nb.ID, listed.ID} {
		if _, err := os.Stat(m.path("acme", "field-app", id, "info.json")); err != nil {
			t.Fatalf("build %s before it is deleted: %v", id, err)
		}
	}
	for _, id := range []string{nb.ID, listed.ID} {
		if err := emu.Data().RemoveBuild(id); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(ttl + 300*time.Millisecond)
	for _, id := range []string{nb.ID, listed.ID} {
		if _, err := os.Stat(m.path("acme", "field-app", id)); !os.IsNotExist(err) {
			t.Errorf("build %s deleted upstream: stat %v after --dir-ttl, want ENOENT", id, err)
		}
	}
	if got := strings.Join(listDir(t, m.path("acme", "field-app")), " "); strings.Contains(got, nb.ID) || strings.Contains(got, listed.ID) {
		t.Errorf("the app still lists a deleted build: %s", got)
	}
}

// TestTokenFileModeWarning: a token file others can read still works, with
// a warning that names it and the fix.
func TestTokenFileModeWarning(t *testing.T) {
	emu := startEmulator(t, nil)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(emu.Token()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tokenFile, 0o644) // whatever the umask
	args := append([]string{"ls", "--token-file", tokenFile}, hostArgs(emu)...)
	out, errOut, code := cli(t, "", args...)
	if code != 0 || !strings.Contains(out, "acme") {
		t.Fatalf("ls with a 0644 token file: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "warning: token file "+tokenFile+" is readable by group or others") || !strings.Contains(errOut, "chmod 600 "+tokenFile) {
		t.Errorf("no warning naming the file and chmod 600: %q", errOut)
	}
	os.Chmod(tokenFile, 0o600)
	if _, errOut, _ := cli(t, "", args...); errOut != "" {
		t.Errorf("a 0600 token file warns: %q", errOut)
	}
}
