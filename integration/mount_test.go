//go:build linux

package integration

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// TestTreeContract checks every directory, file and symlink of the sample
// data against the tree contract, and that stat costs no token where the
// API says the size.
func TestTreeContract(t *testing.T) {
	emu := startEmulator(t, nil)
	cacheDir := t.TempDir()
	m := mount(t, emu, mountConfig{cacheDir: cacheDir, diskBytes: 64 << 20})

	// ls -lR walks everything (READDIRPLUS, stat of every file).
	run(t, "ls", "-lR", m.dir)
	manifests := 0
	for _, e := range expectedFiles(emu) {
		if strings.HasSuffix(e.name, ".plist") {
			manifests++
		}
	}
	if got := emu.Counters().TokensMinted; got != int64(manifests) {
		t.Errorf("ls -lR minted %d tokens, want %d (one per OTA manifest, whose size the API does not give)", got, manifests)
	}

	var roots []string
	for _, o := range emu.Data().Orgs {
		roots = append(roots, o.Slug)
	}
	sort.Strings(roots)
	if got := listDir(t, m.dir); strings.Join(got, ",") != strings.Join(roots, ",") {
		t.Errorf("root lists %v, want %v", got, roots)
	}

	for _, o := range emu.Data().Orgs {
		checkMode(t, m.path(o.Slug), os.ModeDir|0o555)
		for _, a := range o.Apps {
			checkMode(t, m.path(o.Slug, a.Slug), os.ModeDir|0o555)
			var latest *emulator.Build
			want := []string{}
			for _, b := range a.Builds {
				if b.Status != "processed" {
					if _, err := os.Lstat(m.path(o.Slug, a.Slug, b.ID)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s build %s (%s) should not be listed: %v", a.Slug, b.ID, b.Status, err)
					}
					continue
				}
				want = append(want, b.ID)
				if latest == nil || b.CreatedAt.After(latest.CreatedAt) {
					latest = b
				}
			}
			want = append(want, "tags", "versions")
			if latest != nil {
				want = append(want, "latest")
				if target, err := os.Readlink(m.path(o.Slug, a.Slug, "latest")); err != nil || target != latest.ID {
					t.Errorf("%s/%s/latest -> %q (%v), want %s", o.Slug, a.Slug, target, err, latest.ID)
				}
			}
			sort.Strings(want)
			if got := listDir(t, m.path(o.Slug, a.Slug)); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s/%s lists %d entries, want %d", o.Slug, a.Slug, len(got), len(want))
			}
		}
		// An organization and an app can be reached by id as well.
		if _, err := os.Stat(m.path(o.ID)); err != nil {
			t.Errorf("lookup of org by id %s: %v", o.ID, err)
		}
		if len(o.Apps) > 0 {
			if _, err := os.Stat(m.path(o.Slug, o.Apps[0].ID)); err != nil {
				t.Errorf("lookup of app by id: %v", err)
			}
		}
	}

	for _, e := range expectedFiles(emu) {
		p := e.path(m.dir)
		st := checkMode(t, p, 0o444)
		if st == nil {
			continue
		}
		if st.Size() != int64(len(e.data)) {
			t.Errorf("%s: size %d, want %d", p, st.Size(), len(e.data))
		}
		if !st.ModTime().Equal(e.build.CreatedAt.Truncate(time.Second)) && !st.ModTime().Equal(e.build.CreatedAt) {
			t.Errorf("%s: mtime %v, want %v", p, st.ModTime(), e.build.CreatedAt)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Blksize < 1<<20 || sys.Blocks != (st.Size()+511)/512 {
			t.Errorf("%s: blksize %d blocks %d", p, sys.Blksize, sys.Blocks)
		}
		if target, err := os.Readlink(filepath.Join(filepath.Dir(p), e.typ)); err != nil || target != e.name {
			t.Errorf("%s symlink -> %q (%v), want %s", e.typ, target, err, e.name)
		}
		var info struct {
			ID    string                     `json:"id"`
			Files map[string]json.RawMessage `json:"files"`
		}
		if err := json.Unmarshal(readAll(t, filepath.Join(filepath.Dir(p), "info.json")), &info); err != nil || info.ID != e.build.ID {
			t.Errorf("info.json of %s: id %q, %v", e.build.ID, info.ID, err)
		}
		if _, ok := info.Files[e.name]; !ok {
			t.Errorf("info.json of %s does not describe %s", e.build.ID, e.name)
		}
	}

	// Inode numbers stay the same for the mount's life.
	p := expectedFiles(emu)[0].path(m.dir)
	ino1 := inode(t, p)
	run(t, "sh", "-c", "echo 2 > /proc/sys/vm/drop_caches")
	if ino2 := inode(t, p); ino1 != ino2 {
		t.Errorf("inode of %s changed from %d to %d", p, ino1, ino2)
	}

	// A new mount on the same cache dir knows the manifests' sizes already.
	m.unmount()
	emu.ResetCounters()
	m2 := mount(t, emu, mountConfig{cacheDir: cacheDir, diskBytes: 64 << 20})
	run(t, "ls", "-lR", m2.dir)
	if got := emu.Counters().TokensMinted; got != 0 {
		t.Errorf("ls -lR after remount minted %d tokens, want 0", got)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func checkMode(t *testing.T, p string, want os.FileMode) os.FileInfo {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Errorf("stat %s: %v", p, err)
		return nil
	}
	if st.Mode() != want {
		t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
	}
	return st
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestCopyEveryFile copies every build file with cp and checks it with sha256sum.
func TestCopyEveryFile(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{blockSize: 256 << 10})
	dst := t.TempDir()
	for i, e := range expectedFiles(emu) {
		if e.appData.Slug == "nightly" && i%10 != 0 {
			continue // 130 tiny builds: a sample is enough
		}
		out := filepath.Join(dst, e.build.ID+"-"+e.name)
		run(t, "cp", e.path(m.dir), out)
		if got, want := sha256sumOf(t, out), sha256Hex(e.data); got != want {
			t.Errorf("cp %s: sha256 %s, want %s", e.path(m.dir), got, want)
		}
		// The bare type name works as a path too.
		if got := sha256sumOf(t, filepath.Join(filepath.Dir(e.path(m.dir)), e.typ)); got != sha256Hex(e.data) {
			t.Errorf("%s via symlink: wrong bytes", e.path(m.dir))
		}
	}
	// cp of latest/file, as README shows.
	out := filepath.Join(dst, "latest.apk")
	run(t, "cp", m.path("acme", "field-app", "latest", "file"), out)
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Errorf("cp latest/file: %v", err)
	}
}

// TestRsync copies an app directory twice: the second copies nothing and
// costs no token, and symlinks stay symlinks.
func TestRsync(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{})
	dst := t.TempDir()
	run(t, "rsync", "-a", m.path("acme", "field-app")+"/", dst+"/")
	if target, err := os.Readlink(filepath.Join(dst, "latest")); err != nil || target == "" {
		t.Errorf("rsync -a: latest is not a symlink: %v", err)
	}
	for _, e := range expectedFiles(emu) {
		if e.appData.Slug != "field-app" {
			continue
		}
		got, err := os.ReadFile(filepath.Join(dst, e.build.ID, e.name))
		if err != nil || !bytes.Equal(got, e.data) {
			t.Errorf("rsync copy of %s/%s differs (%v)", e.build.ID, e.name, err)
		}
		if fi, err := os.Lstat(filepath.Join(dst, e.build.ID, e.typ)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("rsync -a: %s/%s is not a symlink", e.build.ID, e.typ)
		}
	}
	emu.ResetCounters()
	out := run(t, "rsync", "-a", "--stats", m.path("acme", "field-app")+"/", dst+"/")
	if !strings.Contains(out, "Number of regular files transferred: 0") {
		t.Errorf("second rsync transferred files:\n%s", out)
	}
	if c := emu.Counters(); c.TokensMinted != 0 || c.StorageRequests != 0 {
		t.Errorf("second rsync minted %d tokens and made %d storage requests, want 0 and 0", c.TokensMinted, c.StorageRequests)
	}
}

// bigIPAData is the sample data plus one app with a large .ipa.
func bigIPAData(t *testing.T, size int64, entries int) (*emulator.Dataset, *emulator.Build) {
	t.Helper()
	data := emulator.SampleData()
	b := &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "ios", BuildPlatform: "ios",
		VersionName: "big", VersionCode: "1", OriginalExtension: "ipa", CreatedAt: time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC),
		PackageName: "com.example.big", MinOS: "16.0",
		Objects: map[string]*emulator.Object{"file": {Name: "Big.ipa", Data: emulator.GenerateIPA(size, entries, 7)}}}
	if err := data.AddBuild("acme", "field-ios", b); err != nil {
		t.Fatal(err)
	}
	return data, b
}

// TestUnzipReadsLittle lists and extracts from a large .ipa: only the zip's
// directory and the one entry are fetched, not the whole file.
func TestUnzipReadsLittle(t *testing.T) {
	const size = 64 << 20
	data, b := bigIPAData(t, size, 500)
	emu := startEmulator(t, data)
	m := mount(t, emu, mountConfig{blockSize: 256 << 10})
	ipa := m.path("acme", "field-ios", b.ID, "file.ipa")
	emu.ResetCounters()
	list := run(t, "unzip", "-l", ipa)
	if !strings.Contains(list, "Info.plist") {
		t.Fatalf("unzip -l output lacks Info.plist:\n%.2000s", list)
	}
	// unzip ends its listing with "<bytes> <count> files": the count must
	// be every entry of the archive, as Go's own zip reader sees it.
	raw, _ := emu.Object(b.ID, "file")
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if summary := strings.Fields(lines[len(lines)-1]); len(summary) != 3 || summary[1] != strconv.Itoa(len(zr.File)) || summary[2] != "files" {
		t.Errorf("unzip -l summary %q, want %d files", lines[len(lines)-1], len(zr.File))
	}
	var plistPath string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) == 4 && strings.HasSuffix(f[3], ".app/Info.plist") {
			plistPath = f[3]
		}
	}
	plist := run(t, "unzip", "-p", ipa, plistPath)
	if !strings.Contains(plist, "CFBundleIdentifier") {
		t.Errorf("unzip -p %s: no CFBundleIdentifier in\n%.500s", plistPath, plist)
	}
	if got := emu.Counters().StorageBytes; got > size/20 {
		t.Errorf("unzip -l and -p fetched %d bytes of a %d-byte file; want under 5%%", got, size)
	}
}

// TestExpiryDuringSlowRead reads a file slowly across several token and
// URL expiries; the reader never notices.
func TestExpiryDuringSlowRead(t *testing.T) {
	data, b := bigIPAData(t, 8<<20, 20)
	emu := startEmulator(t, data)
	emu.SetTokenTTL(500 * time.Millisecond)
	emu.SetURLTTL(500 * time.Millisecond)
	emu.SetBandwidth(1 << 20)
	m := mount(t, emu, mountConfig{blockSize: 256 << 10, prefetch: 4})
	want, _ := emu.Object(b.ID, "file")
	f, err := os.Open(m.path("acme", "field-ios", b.ID, "file.ipa"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []byte
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
		time.Sleep(60 * time.Millisecond) // a slow reader
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("slow read across expiries: got %d bytes, want %d, equal=%v", len(got), len(want), bytes.Equal(got, want))
	}
	if minted := emu.Counters().TokensMinted; minted < 2 {
		t.Errorf("only %d tokens minted: the read did not cross an expiry, so the test proves nothing", minted)
	}
}

// TestStorageFaults reads through 503s, cut connections and a storage that
// ignores Range, and gets the right bytes each time.
func TestStorageFaults(t *testing.T) {
	data, b := bigIPAData(t, 6<<20, 20)
	emu := startEmulator(t, data)
	want, _ := emu.Object(b.ID, "file")
	for _, tc := range []struct {
		name   string
		faults emulator.Faults
	}{
		{"503", emulator.Faults{StorageStatus: 503, StorageCount: 6}},
		{"cut", emulator.Faults{CutAfter: 100 << 10, CutCount: 6}},
		{"ignore-range", emulator.Faults{IgnoreRange: true}},
		{"api-429", emulator.Faults{APIStatus: 429, APIRetryAfter: time.Second, APICount: 2}},
		{"api-503", emulator.Faults{APIStatus: 503, APICount: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mount(t, emu, mountConfig{blockSize: 1 << 20})
			p := m.path("acme", "field-ios", b.ID, "file.ipa")
			if _, err := os.Stat(p); err != nil {
				t.Fatal(err)
			}
			emu.SetFaults(tc.faults)
			defer emu.SetFaults(emulator.Faults{})
			if got := sha256sumOf(t, p); got != sha256Hex(want) {
				t.Errorf("with %s faults: sha256 %s, want %s", tc.name, got, sha256Hex(want))
			}
		})
	}
}

// TestAPIDown: a read of an uncached block fails with EIO within the
// deadline, and the mount works again once the API is back.
func TestAPIDown(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{ioTimeout: 2 * time.Second})
	files := expectedFiles(emu)
	var e expectedFile
	for _, f := range files {
		if f.appData.Slug == "field-app" && f.typ == "file" {
			e = f
		}
	}
	p := e.path(m.dir)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	emu.SetFaults(emulator.Faults{APIDown: true})
	t.Logf("before read of %s: %+v", p, emu.Counters())
	start := time.Now()
	_, err := os.ReadFile(p)
	took := time.Since(start)
	t.Logf("after read: %+v", emu.Counters())
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read with the API down: %v, want EIO", err)
	}
	if took > 10*time.Second {
		t.Errorf("read with the API down took %v; the deadline is 2s", took)
	}
	emu.SetFaults(emulator.Faults{})
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, e.data) {
		t.Errorf("read after the API came back: %v", err)
	}
	if _, err := os.ReadDir(m.path("acme")); err != nil {
		t.Errorf("listing after the API came back: %v", err)
	}
}

// TestConcurrentReaders runs 16 readers of the same and of different files.
func TestConcurrentReaders(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{blockSize: 256 << 10})
	var files []expectedFile
	for _, e := range expectedFiles(emu) {
		if e.appData.Slug != "nightly" {
			files = append(files, e)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 16; i++ {
		e := files[0] // half on one file, half spread over the others
		if i%2 == 1 {
			e = files[i%len(files)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := runErr("sha256sum", e.path(m.dir))
			if err != nil || strings.Fields(out)[0] != sha256Hex(e.data) {
				errs <- e.path(m.dir) + ": " + out
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if minted, max := emu.Counters().TokensMinted, int64(len(files)+16); minted > max {
		t.Errorf("%d tokens minted for %d files", minted, len(files))
	}
}

// TestReadOnly: every kind of change fails with EROFS.
func TestReadOnly(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{})
	e := expectedFiles(emu)[0]
	p := e.path(m.dir)
	dir := filepath.Dir(p)
	checks := map[string]error{
		"write":    os.WriteFile(p, []byte("x"), 0o644),
		"create":   os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o644),
		"unlink":   os.Remove(p),
		"rename":   os.Rename(p, p+".old"),
		"mkdir":    os.Mkdir(filepath.Join(dir, "d"), 0o755),
		"chmod":    os.Chmod(p, 0o777),
		"truncate": os.Truncate(p, 0),
		"symlink":  os.Symlink("x", filepath.Join(dir, "l")),
		"setxattr": syscall.Setxattr(p, "user.x", []byte("1"), 0),
	}
	for op, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", op, err)
		}
	}
}

// TestChecksumMismatch: storage serving other bytes than the API's checksum
// fails the read with EIO instead of handing out a corrupt build.
func TestChecksumMismatch(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{blockSize: 256 << 10, diskBytes: 64 << 20})
	var e expectedFile
	for _, f := range expectedFiles(emu) {
		if f.appData.Slug == "field-ios" && f.typ == "file" {
			e = f
		}
	}
	p := e.path(m.dir)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if err := emu.MutateObject(e.build.ID, "file"); err != nil {
		t.Fatal(err)
	}
	// Every complete copy fails, the first and the next ones: pages
	// served before the verdict must not make a second copy succeed.
	for i := 1; i <= 2; i++ {
		out, err := runErr("cp", p, filepath.Join(t.TempDir(), "x.ipa"))
		if err == nil || !strings.Contains(out, "Input/output error") {
			t.Errorf("cp #%d of changed bytes: %v %s, want an I/O error", i, err, out)
		}
	}
	if st := m.cache.Stats(); st.Mismatches < 2 {
		t.Errorf("%d checksum mismatches counted, want 2", st.Mismatches)
	}
}

// TestNewBuildAppears: a build uploaded after mounting can be opened by id
// at once, and is listed (and becomes latest) once the listing expires.
func TestNewBuildAppears(t *testing.T) {
	emu := startEmulator(t, nil)
	m := mount(t, emu, mountConfig{dirTTL: time.Second})
	before := listDir(t, m.path("acme", "field-app"))
	b := &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "android", BuildPlatform: "android",
		VersionName: "new", VersionCode: "999", OriginalExtension: "apk", CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		PackageName: "com.acme.field", MinOS: "24",
		Objects: map[string]*emulator.Object{"file": {Name: "new.apk", Data: []byte("PK\x05\x06 not really an apk, but bytes")}}}
	b.Objects["auto"] = b.Objects["file"]
	if err := emu.Data().AddBuild("acme", "field-app", b); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, m.path("acme", "field-app", b.ID, "file.apk"))
	if !bytes.Equal(got, b.Objects["file"].Data) {
		t.Errorf("new build by id: got %q", got)
	}
	time.Sleep(1100 * time.Millisecond)
	after := listDir(t, m.path("acme", "field-app"))
	if len(after) != len(before)+1 {
		t.Errorf("after the listing expired: %d entries, want %d", len(after), len(before)+1)
	}
	if target, _ := os.Readlink(m.path("acme", "field-app", "latest")); target != b.ID {
		t.Errorf("latest -> %s, want the new build %s", target, b.ID)
	}
}

// TestDiskCacheRemount: a build read once is served from the disk cache by
// the next mount, with no token and no storage byte.
func TestDiskCacheRemount(t *testing.T) {
	data, b := bigIPAData(t, 12<<20, 50)
	emu := startEmulator(t, data)
	want, _ := emu.Object(b.ID, "file")
	cacheDir := t.TempDir()
	mc := mountConfig{blockSize: 1 << 20, cacheDir: cacheDir, diskBytes: 256 << 20}
	m := mount(t, emu, mc)
	p := m.path("acme", "field-ios", b.ID, "file.ipa")
	if got := sha256sumOf(t, p); got != sha256Hex(want) {
		t.Fatalf("first read: wrong bytes")
	}
	if st := m.cache.Stats(); st.Verified != 1 {
		t.Errorf("whole-file read verified %d files against their checksum, want 1", st.Verified)
	}
	m.unmount()

	emu.ResetCounters()
	m2 := mount(t, emu, mc)
	out := filepath.Join(t.TempDir(), "copy.ipa")
	run(t, "cp", m2.path("acme", "field-ios", b.ID, "file.ipa"), out)
	if got := sha256sumOf(t, out); got != sha256Hex(want) {
		t.Errorf("read from disk cache: wrong bytes")
	}
	if c := emu.Counters(); c.TokensMinted != 0 || c.StorageBytes != 0 {
		t.Errorf("remount read minted %d tokens and fetched %d storage bytes, want 0 and 0", c.TokensMinted, c.StorageBytes)
	}
	if st := m2.cache.Stats(); st.DiskHits != 12 {
		t.Errorf("disk hits %d, want 12", st.DiskHits)
	}
}

// TestInterruptStopsFetching: Ctrl-C on cp stops the prefetching from
// storage instead of finishing it in the background.
func TestInterruptStopsFetching(t *testing.T) {
	data, b := bigIPAData(t, 64<<20, 50)
	emu := startEmulator(t, data)
	// A 4 MiB block takes 4 s: a fetch that is not cancelled shows.
	emu.SetBandwidth(1 << 20)
	m := mount(t, emu, mountConfig{blockSize: 4 << 20})
	p := m.path("acme", "field-ios", b.ID, "file.ipa")
	cmd := exec.Command("cp", p, filepath.Join(t.TempDir(), "x"))
	cmd.Dir = os.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // cp waits in block 0; blocks 1 and 2 are prefetching
	if emu.Counters().StorageBytes == 0 {
		t.Fatal("nothing was fetched before the interrupt: the test proves nothing")
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	// The blocks the kernel's readahead READs wait for (the first 8 MiB)
	// end by themselves; the prefetches beyond must stop now. Measured:
	// about 11 MB with cancellation, 24 MiB (six whole blocks) without.
	time.Sleep(4500 * time.Millisecond)
	if got := emu.Counters().StorageBytes; got > 18<<20 {
		t.Errorf("storage sent %d bytes: prefetches went on after cp was interrupted", got)
	}
}
