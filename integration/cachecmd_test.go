//go:build linux

package integration

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/cache/disk"
)

// TestCacheCommand runs cache du, prune and clear through the binary on a
// directory filled with disk.Cache, and checks the result with disk.Cache
// and du(1).
func TestCacheCommand(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	keys := []disk.Key{
		{Build: "0123456789abcdef01234567", Type: "file"},
		{Build: "fedcba9876543210fedcba98", Type: "file"},
		{Build: "aaaaaaaaaaaaaaaaaaaaaaaa", Type: "aab"},
	}
	// Four blocks per file, used in order: keys[0] block 0 is the least
	// recently used, keys[2] block 3 the most.
	c, err := disk.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	blockPath := func(k disk.Key, idx int) string {
		return filepath.Join(dir, "v1", "blocks", k.Build, k.Type, strconv.Itoa(bs)+"-"+strconv.Itoa(idx))
	}
	for i, k := range keys {
		for idx := range 4 {
			if err := c.WriteBlock(k, bs, int64(idx), make([]byte, bs)); err != nil {
				t.Fatal(err)
			}
			mtime := base.Add(time.Duration(4*i+idx) * time.Minute)
			if err := os.Chtimes(blockPath(k, idx), mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.SetSize(k, 4*bs); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()

	// du counts what du(1) counts, and the blocks.
	out, errOut, code := cli(t, "", "cache", "du", "--json", "--cache-dir", dir)
	var du struct {
		DiskBytes  int64 `json:"diskBytes"`
		Blocks     int   `json:"blocks"`
		BlockBytes int64 `json:"blockBytes"`
		Files      int   `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &du); code != 0 || err != nil {
		t.Fatalf("cache du --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	want := strings.Fields(run(t, "du", "-s", "--block-size=1", dir))[0]
	if strconv.FormatInt(du.DiskBytes, 10) != want || du.Blocks != 12 || du.BlockBytes != 12*bs || du.Files != 3 {
		t.Errorf("cache du --json = %+v; want %s bytes as du -s counts, 12 blocks of 3 files, %d bytes", du, want, 12*bs)
	}
	out, _, code = cli(t, "", "cache", "du", "--cache-dir", dir)
	if code != 0 || !strings.Contains(out, want+" bytes") || !strings.Contains(out, "12 blocks of 3 files (768.0 KiB)") {
		t.Errorf("cache du: exit %d\n%s", code, out)
	}

	// Prune removes the least recently used blocks, exactly down to the cap.
	out, errOut, code = cli(t, "", "cache", "prune", "--max-size", strconv.Itoa(7*bs+bs/2), "--cache-dir", dir)
	if code != 0 || !strings.Contains(out, "removed 5 blocks (320.0 KiB)") {
		t.Errorf("cache prune: exit %d\n%s%s", code, out, errOut)
	}
	c, err = disk.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Usage(); got != 7*bs {
		t.Errorf("after prune: Usage = %d, want %d", got, 7*bs)
	}
	c.Close()
	for i, k := range keys {
		for idx := range 4 {
			_, err := os.Stat(blockPath(k, idx))
			if gone := 4*i+idx < 5; gone != os.IsNotExist(err) {
				t.Errorf("after prune: block %d of %s: %v, want removed = %v", idx, k, err, gone)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "v1", "meta", keys[0].Build, keys[0].Type, "size")); err != nil {
		t.Errorf("prune removed metadata: %v", err)
	}

	// Clear leaves the directory and nothing in it.
	out, errOut, code = cli(t, "", "cache", "clear", "--cache-dir", dir)
	if code != 0 || !strings.Contains(out, "removed 7 blocks of 2 files") {
		t.Errorf("cache clear: exit %d\n%s%s", code, out, errOut)
	}
	if files := regularFiles(t, dir); len(files) != 0 {
		t.Errorf("after clear: %v", files)
	}

	// Failures: one line on stderr; exit 1 for a missing directory, which
	// is not made, and 2 for a usage error that names the subcommands.
	missing := filepath.Join(dir, "missing")
	for _, args := range [][]string{{"du"}, {"clear"}, {"prune", "--max-size", "1G"}} {
		_, errOut, code := cli(t, "", append([]string{"cache", "--cache-dir", missing}, args...)...)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, missing+" does not exist") {
			t.Errorf("cache %s of a missing directory: exit %d, stderr %q", args[0], code, errOut)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("cache %s made the missing directory", args[0])
		}
	}
	for _, args := range [][]string{{"cache"}, {"cache", "size"}, {"cache", "prune"}} {
		_, errOut, code := cli(t, "", append(args, "--cache-dir", dir)...)
		if code != 2 || !strings.Contains(errOut, "du, prune or clear") && !strings.Contains(errOut, "--max-size") {
			t.Errorf("%s: exit %d, stderr %q; want a usage error naming the subcommands", args, code, errOut)
		}
	}
	out, errOut, code = cli(t, "", "cache", "--help")
	if code != 0 || !strings.Contains(out, "Usage: appliveryfs cache du|prune") || errOut != "" {
		t.Errorf("cache --help: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestCacheWhileMounted prunes and clears the cache directory of a live
// mount while it reads: every read still returns the right bytes, and the
// mount starts a new tree afterwards.
func TestCacheWhileMounted(t *testing.T) {
	emu := startEmulator(t, nil)
	cacheDir := t.TempDir()
	// A memory cache of a few blocks, so that reads go to the disk cache.
	m := mount(t, emu, mountConfig{blockSize: 256 << 10, memBytes: 2 << 20, cacheDir: cacheDir, diskBytes: 256 << 20})
	files := expectedFiles(emu)
	readEverything := func() {
		run(t, "sh", "-c", "echo 1 > /proc/sys/vm/drop_caches")
		for _, e := range files {
			if got := sha256sumOf(t, e.path(m.dir)); got != sha256Hex(e.data) {
				t.Errorf("%s: sha256 %s, want %s", e.path(m.dir), got, sha256Hex(e.data))
			}
		}
	}
	blocks := func() int {
		out, errOut, code := cli(t, "", "cache", "du", "--json", "--cache-dir", cacheDir)
		var du struct{ Blocks int }
		if err := json.Unmarshal([]byte(out), &du); code != 0 || err != nil {
			t.Fatalf("cache du: exit %d, %v: %s", code, err, errOut)
		}
		return du.Blocks
	}

	readEverything()
	if blocks() == 0 {
		t.Fatal("no blocks in the disk cache after reading every file")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 6 {
			args := []string{"cache", "clear", "--cache-dir", cacheDir}
			if i%2 == 0 {
				args = []string{"cache", "prune", "--max-size", "1M", "--cache-dir", cacheDir}
			}
			// Not cli: it may call t.Fatal, which only the test's goroutine may.
			if out, err := exec.Command(binPath, args...).CombinedOutput(); err != nil {
				t.Errorf("cache %s while mounted: %v: %s", args[1], err, out)
			}
		}
	})
	readEverything()
	wg.Wait()

	if _, errOut, code := cli(t, "", "cache", "clear", "--cache-dir", cacheDir); code != 0 {
		t.Fatalf("cache clear: exit %d: %s", code, errOut)
	}
	readEverything()
	if blocks() == 0 {
		t.Error("the mount stored no blocks after its cache was cleared")
	}
}

// TestVersionStamped builds the binary as the Makefile does, in an
// environment that turns VCS stamping off, and checks that version still
// names the revision.
func TestVersionStamped(t *testing.T) {
	head, err := exec.Command("git", "-C", "..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "appliveryfs")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	build.Dir = ".."
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`^appliveryfs \S+ \(rev ([0-9a-f]{7})(, modified)?, go[0-9][^ )]*\)\n$`)
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		m := re.FindStringSubmatch(string(out))
		if err != nil || m == nil || m[1] != string(head[:7]) {
			t.Errorf("appliveryfs %s = %q, %v; want the revision %.7s", arg, out, err, head)
		}
	}
	cmd := exec.Command(bin, "version", "--help")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "Usage: appliveryfs version") || stderr.Len() != 0 {
		t.Errorf("version --help: %v, stdout %q, stderr %q", err, out, stderr.String())
	}
}

// regularFiles lists the files below dir.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
