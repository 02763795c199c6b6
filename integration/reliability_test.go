//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// records counts the log records whose msg starts with prefix.
func records(t *testing.T, logs *syncBuffer, prefix string) int {
	n := 0
	for _, rec := range logRecords(t, logs.String()) {
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			n++
		}
	}
	return n
}

// copyAll copies every build file of the emulator out of the mount twice,
// the second time after dropping the kernel's pages, and checks the bytes.
func copyAll(t *testing.T, emu *emulator.Server, mnt string) {
	t.Helper()
	for pass := 0; pass < 2; pass++ {
		for _, e := range expectedFiles(emu) {
			if got := sha256sumOf(t, e.path(mnt)); got != sha256Hex(e.data) {
				t.Errorf("%s: wrong bytes", e.path(mnt))
			}
		}
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	}
}

// TestDiskCacheFaults: a disk cache that is full, read-only or removed
// while mounted, or holds damaged blocks, costs network reads and one log
// line per cause; the bytes stay right and the mount stays up.
func TestDiskCacheFaults(t *testing.T) {
	data, _ := bigIPAData(t, 6<<20, 20)
	emu := startEmulator(t, data)
	small := func(t *testing.T, opts string) string {
		dir := t.TempDir()
		run(t, "mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir)
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		return dir
	}
	flags := []string{"--block-size", "256K", "--cache-size", "4M", "--kernel-cache=false"}

	t.Run("full", func(t *testing.T) {
		dir := small(t, "size=1m")
		mnt := mountpoint(t)
		_, logs := startLogged(t, emu, mnt, append(flags, "--cache-dir", dir)...)
		copyAll(t, emu, mnt)
		if n := records(t, logs, "disk cache: write failed: no space left on device"); n != 1 {
			t.Errorf("%d records for a full disk, want 1:\n%s", n, logs)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		dir := small(t, "size=64m")
		if err := os.MkdirAll(filepath.Join(dir, "v1", "blocks"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, "v1", "meta"), 0o700)
		run(t, "mount", "-o", "remount,ro", dir)
		mnt := mountpoint(t)
		_, logs := startLogged(t, emu, mnt, append(flags, "--cache-dir", dir)...)
		copyAll(t, emu, mnt)
		if n := records(t, logs, "disk cache: write failed: read-only file system"); n != 1 {
			t.Errorf("%d records for a read-only disk, want 1:\n%s", n, logs)
		}
	})
	t.Run("removed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache")
		mnt := mountpoint(t)
		_, logs := startLogged(t, emu, mnt, append(flags, "--cache-dir", dir)...)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		copyAll(t, emu, mnt)
		if strings.Contains(logs.String(), `"level":"ERROR"`) {
			t.Errorf("errors logged:\n%s", logs)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		dir := t.TempDir()
		mnt := mountpoint(t)
		cmd, _ := startLogged(t, emu, mnt, append(flags, "--cache-dir", dir)...)
		copyAll(t, emu, mnt)
		cmd.Process.Signal(syscall.SIGTERM)
		waitExit(t, cmd, 10*time.Second)
		var blocks []string
		filepath.WalkDir(filepath.Join(dir, "v1", "blocks"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				blocks = append(blocks, p)
			}
			return nil
		})
		if len(blocks) < 4 {
			t.Fatalf("%d blocks on disk after a copy of everything", len(blocks))
		}
		for i, p := range blocks {
			b, _ := os.ReadFile(p)
			if i%2 == 0 {
				b[len(b)/2] ^= 0x40 // a flipped byte
			} else {
				b = b[:len(b)/3] // torn
			}
			os.WriteFile(p, b, 0o600)
		}
		emu.ResetCounters()
		_, logs := startLogged(t, emu, mnt, append(flags, "--cache-dir", dir)...)
		copyAll(t, emu, mnt)
		if n := records(t, logs, "disk cache: a damaged block was removed"); n != 1 {
			t.Errorf("%d records for %d damaged blocks, want 1:\n%s", n, len(blocks), logs)
		}
		if emu.Counters().StorageBytes == 0 {
			t.Error("no block came from the network: the damaged ones were served")
		}
	})
	t.Run("two mounts and a prune", func(t *testing.T) {
		dir := t.TempDir()
		a, b := mountpoint(t), mountpoint(t)
		startLogged(t, emu, a, append(flags, "--cache-dir", dir)...)
		startLogged(t, emu, b, append(flags, "--cache-dir", dir)...)
		stop := make(chan struct{})
		pruned := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					pruned <- n
					return
				default:
				}
				if _, err := runErr(binPath, "cache", "prune", "--max-size", "512K", "--cache-dir", dir); err == nil {
					n++
				}
			}
		}()
		done := make(chan struct{})
		go func() { copyAll(t, emu, a); close(done) }()
		copyAll(t, emu, b)
		<-done
		close(stop)
		if n := <-pruned; n == 0 {
			t.Error("no prune ran during the copies")
		}
	})
}

// TestManyReadersUnderOneBudget: 64 readers of 16 cold files, each larger
// than the memory budget, at once: right bytes, memory within budget + 64
// MiB, every reader done, and few blocks fetched twice (readers must not
// evict each other's unread prefetched blocks).
func TestManyReadersUnderOneBudget(t *testing.T) {
	const files, perFile, size = 16, 4, 52 << 20
	data := emulator.SampleData()
	rng := rand.NewChaCha8([32]byte{7})
	var builds []*emulator.Build
	for i := range files {
		body := make([]byte, size+i*4099)
		rng.Read(body)
		b := &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "android", BuildPlatform: "android",
			VersionName: fmt.Sprintf("scale-%d", i), OriginalExtension: "apk", CreatedAt: time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC),
			Objects: map[string]*emulator.Object{"file": {Name: "big.apk", Data: body}}}
		if err := data.AddBuild("acme", "nightly", b); err != nil {
			t.Fatal(err)
		}
		builds = append(builds, b)
	}
	emu := startEmulator(t, data)
	mnt := mountpoint(t)
	cmd, logs := startLogged(t, emu, mnt, "--cache-size", "48M", "--block-size", "1M", "--disk-cache-size", "0",
		"--metrics-addr", "127.0.0.1:0", "--cache-dir", t.TempDir())
	url, _ := waitRecord(t, logs, "serving metrics")["addr"].(string)

	type result struct {
		took time.Duration
		err  string
	}
	results := make(chan result, files*perFile)
	start := time.Now()
	for _, b := range builds {
		want := sha256Hex(b.Objects["file"].Data)
		for range perFile {
			go func() {
				began := time.Now()
				got, err := runErr("sha256sum", filepath.Join(mnt, "acme", "nightly", b.ID, "file.apk"))
				msg := ""
				if err != nil || !strings.HasPrefix(got, want) {
					msg = fmt.Sprintf("%s: %v %.80s", b.ID, err, got)
				}
				results <- result{time.Since(began), msg}
			}()
		}
	}
	var slowest time.Duration
	for range files * perFile {
		select {
		case r := <-results:
			if r.err != "" {
				t.Error(r.err)
			}
			slowest = max(slowest, r.took)
		case <-time.After(3 * time.Minute):
			t.Fatal("a reader starved: not done after 3 minutes")
		}
	}
	m := scrape(t, url)
	hwm := vmHWM(t, cmd.Process.Pid)
	t.Logf("%d readers of %d files of %d MiB in %s (slowest reader %s): fetched %v blocks, refetched %v, prefetched %v, "+
		"wasted %v; peak RSS %d MiB", files*perFile, files, size>>20, time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond),
		m["appliveryfs_cache_misses_total{tier=\"memory\"}"], m["appliveryfs_refetched_blocks_total"],
		m["appliveryfs_prefetched_blocks_total"], m["appliveryfs_prefetch_wasted_blocks_total"], hwm>>20)
	if limit := int64(48+64) << 20; hwm > limit {
		t.Errorf("peak RSS %d MiB, want at most --cache-size + 64 MiB = %d MiB", hwm>>20, limit>>20)
	}
	// Blocks are fetched again when a reader needs one that others read
	// and the budget let go: four readers of a file at four places, in a
	// budget of less than a block per reader. What must not happen is a
	// reader's prefetched, unread block evicted for another's.
	if wasted, prefetched := m["appliveryfs_prefetch_wasted_blocks_total"], m["appliveryfs_prefetched_blocks_total"]; wasted > prefetched/20 {
		t.Errorf("%v of %v prefetched blocks evicted unread: readers evict each other's prefetches", wasted, prefetched)
	}
}

// vmHWM is a process's peak resident set, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
