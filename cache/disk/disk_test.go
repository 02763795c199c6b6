package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

var (
	testKey  = Key{Build: "0123456789abcdef01234567", Type: "file"}
	otherKey = Key{Build: "fedcba9876543210fedcba98", Type: "aab"}
)

// testData returns n bytes that depend on key, idx and n, so a block
// served for the wrong key, index or length is noticed.
func testData(key Key, idx int64, n int) []byte {
	seed := fmt.Sprintf("%s#%d#%d|", key, idx, n)
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func testOpen(t *testing.T, dir string, maxBytes int64) *Cache {
	t.Helper()
	c, err := Open(dir, maxBytes)
	if err != nil {
		t.Fatalf("Open(%q, %d): %v", dir, maxBytes, err)
	}
	c.SetDirectIO(true) // as a mount does; TestDirectIO covers both ways
	t.Cleanup(func() { c.Close() })
	return c
}

func testWrite(t *testing.T, c *Cache, key Key, blockSize, idx int64, n int) {
	t.Helper()
	if err := c.WriteBlock(key, blockSize, idx, testData(key, idx, n)); err != nil {
		t.Fatalf("WriteBlock(%s, %d, %d): %v", key, blockSize, idx, err)
	}
}

// testHit fails unless block idx of key reads back as written with n bytes.
func testHit(t *testing.T, c *Cache, key Key, blockSize, idx int64, n int) {
	t.Helper()
	got, ok := read(c, key, blockSize, idx, n)
	if !ok {
		t.Fatalf("ReadBlock(%s, %d, %d, %d) missed, want hit", key, blockSize, idx, n)
	}
	if want := testData(key, idx, n); !bytes.Equal(got, want) {
		t.Fatalf("ReadBlock(%s, %d, %d, %d) returned wrong bytes", key, blockSize, idx, n)
	}
}

func testMiss(t *testing.T, c *Cache, key Key, blockSize, idx int64, n int) {
	t.Helper()
	if _, ok := read(c, key, blockSize, idx, n); ok {
		t.Fatalf("ReadBlock(%s, %d, %d, %d) hit, want miss", key, blockSize, idx, n)
	}
}

// read is ReadBlock into a fresh buffer of n bytes, aligned as the memory
// cache's buffers are, so that direct I/O can read into it.
func read(c *Cache, key Key, blockSize, idx int64, n int) ([]byte, bool) {
	buf := alignedBuf(n)
	return buf, c.ReadBlock(key, blockSize, idx, buf)
}

func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	off := 0
	if r := uintptr(unsafe.Pointer(&b[0])) % directAlign; r != 0 {
		off = int(directAlign - r)
	}
	return b[off : off+n : off+n]
}

// stored reports whether c indexes the block or its file exists, without
// reading it: a stored block, as far as eviction is concerned.
func stored(c *Cache, key Key, blockSize, idx int64) bool {
	id := blockID{key, blockSize, idx}
	c.mu.Lock()
	_, ok := c.index[id]
	c.mu.Unlock()
	return ok || exists(c.blockPath(id))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestRoundTrip(t *testing.T) {
	c := testOpen(t, t.TempDir(), 1<<30)
	const bs = 4 << 20
	if stored(c, testKey, bs, 0) {
		t.Fatal("stored on empty cache = true")
	}
	testMiss(t, c, testKey, bs, 0, bs)

	testWrite(t, c, testKey, bs, 0, bs)
	testWrite(t, c, testKey, bs, 1, 1234) // short last block
	testWrite(t, c, testKey, bs, 2, 0)    // empty file
	testHit(t, c, testKey, bs, 0, bs)
	testHit(t, c, testKey, bs, 1, 1234)
	testHit(t, c, testKey, bs, 2, 0)
	if !stored(c, testKey, bs, 1) {
		t.Error("stored after WriteBlock = false")
	}
	if got, want := c.Usage(), int64(bs+1234); got != want {
		t.Errorf("Usage = %d, want %d", got, want)
	}

	// Another block size or another file is another block.
	testMiss(t, c, testKey, bs/2, 0, bs/2)
	testMiss(t, c, otherKey, bs, 0, bs)

	// Rewriting a block does not count it twice.
	testWrite(t, c, testKey, bs, 1, 1234)
	if got, want := c.Usage(), int64(bs+1234); got != want {
		t.Errorf("Usage after rewrite = %d, want %d", got, want)
	}

	if err := c.WriteBlock(testKey, 100, 0, make([]byte, 101)); err == nil {
		t.Error("WriteBlock of more than blockSize bytes succeeded")
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testMiss(t, c, testKey, bs, 1, 1234)
	if err := c.WriteBlock(testKey, bs, 3, []byte("x")); !errors.Is(err, errClosed) {
		t.Errorf("WriteBlock after Close = %v, want %v", err, errClosed)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	testWrite(t, c, testKey, 1000, 0, 1000)
	testWrite(t, c, testKey, 1000, 1, 10)
	if err := c.SetSize(testKey, 1010); err != nil {
		t.Fatal(err)
	}
	if err := c.SetVerified(testKey, "sha1:abc"); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = testOpen(t, dir, 1<<20)
	if got := c.Usage(); got != 1010 {
		t.Errorf("Usage after reopen = %d, want 1010", got)
	}
	testHit(t, c, testKey, 1000, 0, 1000)
	testHit(t, c, testKey, 1000, 1, 10)
	if size, ok := c.Size(testKey); !ok || size != 1010 {
		t.Errorf("Size after reopen = %d, %v; want 1010, true", size, ok)
	}
	if !c.Verified(testKey, "sha1:abc") {
		t.Error("Verified after reopen = false")
	}
}

func TestTornBlock(t *testing.T) {
	const bs, n = 1000, 600
	damages := map[string]func(path string) error{
		"truncated": func(path string) error { return os.Truncate(path, n/2) },
		"trailer cut": func(path string) error {
			return os.Truncate(path, n+trailerLen-1)
		},
		"empty": func(path string) error { return os.Truncate(path, 0) },
		"payload byte flipped": func(path string) error {
			return flip(path, n/3)
		},
		"trailer byte flipped": func(path string) error {
			return flip(path, n+9)
		},
	}
	for name, damage := range damages {
		for _, reopen := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", name, reopen), func(t *testing.T) {
				dir := t.TempDir()
				c := testOpen(t, dir, 1<<20)
				testWrite(t, c, testKey, bs, 0, n)
				path := c.blockPath(blockID{testKey, bs, 0})
				if err := damage(path); err != nil {
					t.Fatal(err)
				}
				if reopen {
					c.Close()
					c = testOpen(t, dir, 1<<20)
				}
				testMiss(t, c, testKey, bs, 0, n)
				if exists(path) {
					t.Error("damaged block file still exists after the miss")
				}
				if stored(c, testKey, bs, 0) {
					t.Error("stored of a damaged block = true after the miss")
				}
				if got := c.Usage(); got != 0 {
					t.Errorf("Usage = %d, want 0", got)
				}
				// The block can be stored again.
				testWrite(t, c, testKey, bs, 0, n)
				testHit(t, c, testKey, bs, 0, n)
			})
		}
	}
}

func flip(path string, off int64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[off] ^= 0x40
	return os.WriteFile(path, b, 0o600)
}

func TestTempFiles(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	testWrite(t, c, testKey, 100, 0, 100)
	if err := c.SetSize(testKey, 100); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// A crashed writer leaves temp files beside the blocks and the metadata;
	// one left by a live writer is recent.
	blockDir := filepath.Join(dir, version, "blocks", testKey.Build, testKey.Type)
	metaDir := filepath.Join(dir, version, "meta", testKey.Build, testKey.Type)
	stale := []string{filepath.Join(blockDir, tempPrefix+"1"), filepath.Join(metaDir, tempPrefix+"2")}
	fresh := filepath.Join(blockDir, tempPrefix+"3")
	old := time.Now().Add(-2 * staleTemp)
	for _, p := range append(stale, fresh) {
		if err := os.WriteFile(p, testData(testKey, 1, 100), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range stale {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	c = testOpen(t, dir, 1<<20)
	for _, p := range stale {
		if exists(p) {
			t.Errorf("stale temp file %s survived Open", p)
		}
	}
	if !exists(fresh) {
		t.Errorf("recent temp file %s was removed", fresh)
	}
	if got := c.Usage(); got != 100 {
		t.Errorf("Usage = %d, want 100 (temp files are not blocks)", got)
	}
	testMiss(t, c, testKey, 100, 1, 100)
	testHit(t, c, testKey, 100, 0, 100)
}

func TestWrongLength(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	testWrite(t, c, testKey, 1000, 0, 500)
	path := c.blockPath(blockID{testKey, 1000, 0})
	for _, reopen := range []bool{false, true} {
		if reopen {
			c.Close()
			c = testOpen(t, dir, 1<<20)
		}
		for _, want := range []int{0, 499, 501, 1000, 1001} {
			testMiss(t, c, testKey, 1000, 0, want)
		}
		// An intact block asked for with the wrong length is kept.
		if !exists(path) {
			t.Fatalf("reopen=%v: intact block removed after a wrong-length read", reopen)
		}
		testHit(t, c, testKey, 1000, 0, 500)
	}
}

func TestEvictLRU(t *testing.T) {
	const bs = 100
	c := testOpen(t, t.TempDir(), 10*bs)
	for i := range int64(10) {
		testWrite(t, c, testKey, bs, i, bs)
	}
	if got := c.Usage(); got != 10*bs {
		t.Fatalf("Usage = %d, want %d (at the cap, nothing evicted)", got, 10*bs)
	}
	testHit(t, c, testKey, bs, 0, bs) // 0 becomes the most recent

	// Going over the cap evicts down to 90%: the two least recently used.
	testWrite(t, c, testKey, bs, 10, bs)
	if got := c.Usage(); got != 9*bs {
		t.Errorf("Usage = %d, want %d", got, 9*bs)
	}
	for i := range int64(11) {
		evicted := i == 1 || i == 2
		path := c.blockPath(blockID{testKey, bs, i})
		if has := stored(c, testKey, bs, i); has == evicted || exists(path) == evicted {
			t.Errorf("block %d: stored = %v, file exists = %v; want evicted = %v", i, has, exists(path), evicted)
		}
	}

	// A block larger than the whole cache is not stored and evicts nothing.
	if err := c.WriteBlock(otherKey, 100*bs, 0, make([]byte, 11*bs)); err != nil {
		t.Fatal(err)
	}
	if stored(c, otherKey, 100*bs, 0) || c.Usage() != 9*bs {
		t.Errorf("oversized block: stored = %v, Usage = %d", stored(c, otherKey, 100*bs, 0), c.Usage())
	}
}

func TestEvictOnOpenByMtime(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	base := time.Now().Add(-time.Hour)
	for i := range int64(5) {
		testWrite(t, c, testKey, bs, i, bs)
		// Block 0 was used last, then 4, 3, 2, 1.
		mtime := base.Add(time.Duration(i) * time.Minute)
		if i == 0 {
			mtime = base.Add(time.Hour)
		}
		if err := os.Chtimes(c.blockPath(blockID{testKey, bs, i}), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()

	// Reopening with a smaller cap evicts to 90% of it, oldest mtime first.
	c = testOpen(t, dir, 3*bs)
	if got := c.Usage(); got != 2*bs {
		t.Errorf("Usage = %d, want %d", got, 2*bs)
	}
	for i := range int64(5) {
		if has, want := stored(c, testKey, bs, i), i == 0 || i == 4; has != want {
			t.Errorf("block %d: stored = %v, want %v", i, has, want)
		}
	}
}

func TestHitTouchesMtime(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	testWrite(t, c, testKey, 100, 0, 100)
	path := c.blockPath(blockID{testKey, 100, 0})
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = testOpen(t, dir, 1<<20)
	testHit(t, c, testKey, 100, 0, 100)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(st.ModTime()); age > time.Minute {
		t.Errorf("mtime is %v old after a hit, want refreshed", age)
	}
}

func TestDisabledBlocks(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 0)
	if err := c.WriteBlock(testKey, 100, 0, testData(testKey, 0, 100)); err != nil {
		t.Fatalf("WriteBlock with blocks disabled: %v", err)
	}
	testMiss(t, c, testKey, 100, 0, 100)
	if stored(c, testKey, 100, 0) || c.Usage() != 0 {
		t.Errorf("stored = %v, Usage = %d; want false, 0", stored(c, testKey, 100, 0), c.Usage())
	}
	if exists(filepath.Join(dir, version, "blocks", testKey.Build)) {
		t.Error("a block directory was created with blocks disabled")
	}
	if err := c.SetSize(testKey, 12345); err != nil {
		t.Fatal(err)
	}
	if err := c.SetVerified(testKey, "abc"); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = testOpen(t, dir, 0)
	if size, ok := c.Size(testKey); !ok || size != 12345 {
		t.Errorf("Size = %d, %v; want 12345, true", size, ok)
	}
	if !c.Verified(testKey, "abc") {
		t.Error("Verified = false")
	}
	if _, err := Open(dir, -1); err == nil {
		t.Error("Open with a negative cap succeeded")
	}
}

func TestSizes(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	if _, ok := c.Size(testKey); ok {
		t.Error("Size of unknown file ok")
	}
	if err := c.SetSize(testKey, -1); err == nil {
		t.Error("SetSize(-1) succeeded")
	}
	for _, size := range []int64{0, 1 << 40} {
		if err := c.SetSize(testKey, size); err != nil {
			t.Fatal(err)
		}
		// A fresh Cache reads it from the file rather than from memory.
		if got, ok := testOpen(t, dir, 1<<20).Size(testKey); !ok || got != size {
			t.Errorf("Size = %d, %v; want %d, true", got, ok, size)
		}
	}
	// A corrupt size file is a miss, not a wrong size.
	path := c.metaPath(testKey, sizeName)
	if err := flip(path, 0); err != nil {
		t.Fatal(err)
	}
	if got, ok := testOpen(t, dir, 1<<20).Size(testKey); ok {
		t.Errorf("Size from corrupt file = %d, true; want miss", got)
	}
}

func TestVerified(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	if c.Verified(testKey, "abc") {
		t.Error("Verified before SetVerified = true")
	}
	if err := c.SetVerified(testKey, "abc"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key      Key
		checksum string
		want     bool
	}{
		{testKey, "abc", true},
		{testKey, "abd", false},
		{testKey, "ab", false},
		{testKey, "", false},
		{otherKey, "abc", false},
	} {
		if got := c.Verified(tc.key, tc.checksum); got != tc.want {
			t.Errorf("Verified(%s, %q) = %v, want %v", tc.key, tc.checksum, got, tc.want)
		}
	}
	if err := c.SetVerified(testKey, ""); err == nil {
		t.Error("SetVerified with an empty checksum succeeded")
	}
	if err := c.SetVerified(testKey, "xyz"); err != nil {
		t.Fatal(err)
	}
	if c.Verified(testKey, "abc") || !c.Verified(testKey, "xyz") {
		t.Error("SetVerified did not replace the previous checksum")
	}
}

func TestDropFile(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	for _, key := range []Key{testKey, otherKey} {
		for i := range int64(3) {
			testWrite(t, c, key, 100, i, 100)
		}
		if err := c.SetSize(key, 300); err != nil {
			t.Fatal(err)
		}
		if err := c.SetVerified(key, "sum"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DropFile(testKey); err != nil {
		t.Fatal(err)
	}
	if err := c.DropFile(testKey); err != nil {
		t.Errorf("second DropFile: %v", err)
	}
	if got := c.Usage(); got != 300 {
		t.Errorf("Usage = %d, want 300", got)
	}

	// Check both this Cache and a fresh one, which knows only the files.
	for _, c := range []*Cache{c, testOpen(t, dir, 1<<20)} {
		for i := range int64(3) {
			testMiss(t, c, testKey, 100, i, 100)
			testHit(t, c, otherKey, 100, i, 100)
		}
		if c.Verified(testKey, "sum") || !c.Verified(otherKey, "sum") {
			t.Error("DropFile removed the wrong verified mark")
		}
		if size, ok := c.Size(testKey); !ok || size != 300 {
			t.Errorf("Size after DropFile = %d, %v; want 300, true", size, ok)
		}
	}
}

func TestInvalidKeys(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	bad := []Key{
		{Build: "", Type: "file"},
		{Build: "..", Type: "file"},
		{Build: "../../etc", Type: "file"},
		{Build: "abc/def", Type: "file"},
		{Build: strings.Repeat("a", 65), Type: "file"},
		{Build: "abc-def", Type: "file"},
		{Build: "abc", Type: ""},
		{Build: "abc", Type: ".."},
		{Build: "abc", Type: "File"},
		{Build: "abc", Type: "f1"},
		{Build: "abc", Type: strings.Repeat("a", 17)},
		{Build: "abc\x00", Type: "file"},
	}
	for _, key := range bad {
		if err := c.WriteBlock(key, 100, 0, []byte("x")); err == nil {
			t.Errorf("WriteBlock(%q) succeeded", key)
		}
		if _, ok := read(c, key, 100, 0, 1); ok {
			t.Errorf("ReadBlock(%q) hit", key)
		}
		if err := c.SetSize(key, 1); err == nil {
			t.Errorf("SetSize(%q) succeeded", key)
		}
		if _, ok := c.Size(key); ok {
			t.Errorf("Size(%q) ok", key)
		}
		if err := c.SetVerified(key, "x"); err == nil {
			t.Errorf("SetVerified(%q) succeeded", key)
		}
		if c.Verified(key, "x") {
			t.Errorf("Verified(%q) = true", key)
		}
		if err := c.DropFile(key); err == nil {
			t.Errorf("DropFile(%q) succeeded", key)
		}
	}
	for _, tc := range []struct{ blockSize, idx int64 }{{0, 0}, {-1, 0}, {100, -1}} {
		if err := c.WriteBlock(testKey, tc.blockSize, tc.idx, nil); err == nil {
			t.Errorf("WriteBlock(blockSize %d, idx %d) succeeded", tc.blockSize, tc.idx)
		}
	}
	// The longest valid parts are accepted.
	long := Key{Build: strings.Repeat("Z9", 32), Type: strings.Repeat("z", 16)}
	testWrite(t, c, long, 100, 0, 10)
	testHit(t, c, long, 100, 0, 10)

	// Nothing was written outside the cache's own tree.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != version {
		t.Errorf("cache dir holds %v, want only %s", entries, version)
	}
}

func TestWriteError(t *testing.T) {
	// A regular file where a directory belongs fails writes even for root.
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	for _, sub := range []string{"blocks", "meta"} {
		if err := os.WriteFile(filepath.Join(dir, version, sub, testKey.Build), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := c.WriteBlock(testKey, 100, 7, []byte("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "write block 7 of "+testKey.String()+": ") {
		t.Errorf("WriteBlock error = %v, want one naming the block", err)
	}
	if err := c.SetSize(testKey, 1); err == nil {
		t.Error("SetSize succeeded")
	}
	if err := c.SetVerified(testKey, "x"); err == nil {
		t.Error("SetVerified succeeded")
	}
}

func TestWritePermission(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("permissions do not stop root")
	}
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	blocks := filepath.Join(dir, version, "blocks")
	meta := filepath.Join(dir, version, "meta")
	for _, p := range []string{blocks, meta} {
		if err := os.Chmod(p, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(p, 0o700) })
	}
	err := c.WriteBlock(testKey, 100, 7, []byte("x"))
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "write block 7 of "+testKey.String()) {
		t.Errorf("WriteBlock error = %v, want a wrapped permission error", err)
	}
	if err := c.SetSize(testKey, 1); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("SetSize error = %v, want a wrapped permission error", err)
	}
}

// TestSharedEviction checks that a Cache accounts for blocks another
// process stored once it rescans, and evicts them too.
func TestSharedEviction(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	a := testOpen(t, dir, 10*bs)
	b := testOpen(t, dir, 10*bs)
	b.rescanEvery = 0
	for i := range int64(6) {
		testWrite(t, a, testKey, bs, i, bs)
	}
	for i := range int64(5) {
		testWrite(t, b, otherKey, bs, i, bs)
	}
	if got := b.Usage(); got != 9*bs {
		t.Errorf("b.Usage = %d, want %d", got, 9*bs)
	}
	files := 0
	for _, key := range []Key{testKey, otherKey} {
		for i := range int64(6) {
			if exists(b.blockPath(blockID{key, bs, i})) {
				files++
			}
		}
	}
	if files != 9 {
		t.Errorf("%d block files on disk, want 9", files)
	}
	for i := range int64(5) {
		testHit(t, b, otherKey, bs, i, bs)
	}
	// a learns of its evicted blocks by missing them.
	for i := range int64(6) {
		read(a, testKey, bs, i, bs)
	}
	if got := a.Usage(); got != 4*bs {
		t.Errorf("a.Usage = %d, want %d", got, 4*bs)
	}
}

// TestConcurrent runs two Caches on one directory, as two mounts would,
// with many goroutines writing, reading and evicting at once. Every hit must
// return exactly the bytes written.
func TestConcurrent(t *testing.T) {
	const (
		bs      = 4096
		nblocks = 16
		workers = 4
		rounds  = 300
	)
	dir := t.TempDir()
	caches := []*Cache{testOpen(t, dir, 24*bs), testOpen(t, dir, 24*bs)}
	caches[1].rescanEvery = time.Millisecond
	keys := []Key{testKey, otherKey, {Build: "aaaaaaaaaaaaaaaaaaaaaaaa", Type: "auto"}}
	blockLen := func(idx int64) int {
		if idx == nblocks-1 {
			return 1000 // the short last block
		}
		return bs
	}

	var wg sync.WaitGroup
	for w := range 2 * workers {
		c := caches[w%2]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				key := keys[rng.IntN(len(keys))]
				idx := rng.Int64N(nblocks)
				n := blockLen(idx)
				switch op := rng.IntN(10); {
				case op < 4:
					if err := c.WriteBlock(key, bs, idx, testData(key, idx, n)); err != nil {
						t.Errorf("WriteBlock: %v", err)
						return
					}
				case op < 9:
					if got, ok := read(c, key, bs, idx, n); ok && !bytes.Equal(got, testData(key, idx, n)) {
						t.Errorf("ReadBlock(%s, %d) returned wrong bytes", key, idx)
						return
					}
				default:
					stored(c, key, bs, idx)
				}
			}
		})
	}
	wg.Wait()

	// Reads may have learnt of blocks the other Cache stored, so the cap is
	// only enforced again by a write; one that rescans sees the whole tree.
	for _, c := range caches {
		c.rescanEvery = 0
		testWrite(t, c, keys[0], bs, 0, bs)
		if u := c.Usage(); u < 0 || u > 24*bs {
			t.Errorf("Usage = %d, want within [0, %d]", u, 24*bs)
		}
	}
	var onDisk int64
	filepath.WalkDir(filepath.Join(dir, version, "blocks"), func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			info, _ := e.Info()
			onDisk += info.Size() - trailerLen
		}
		return nil
	})
	if onDisk > 24*bs {
		t.Errorf("%d block bytes on disk after rescanning writes, want at most %d", onDisk, 24*bs)
	}
	// Whatever survived is intact and readable by a third Cache.
	c := testOpen(t, dir, 1<<30)
	for _, key := range keys {
		for idx := range int64(nblocks) {
			if got, ok := read(c, key, bs, idx, blockLen(idx)); ok && !bytes.Equal(got, testData(key, idx, blockLen(idx))) {
				t.Errorf("block %d of %s corrupt after concurrent use", idx, key)
			}
		}
	}
}
