package disk

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeAged writes the blocks of key in order, each bs bytes, with mtimes
// one minute apart from base: order[0] is the least recently used.
func writeAged(t *testing.T, c *Cache, key Key, bs int64, base time.Time, order []int64) {
	t.Helper()
	for i, idx := range order {
		testWrite(t, c, key, bs, idx, int(bs))
		mtime := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(c.blockPath(blockID{key, bs, idx}), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPrune(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	w := testOpen(t, dir, 1<<20)
	order := []int64{3, 0, 4, 1, 2} // least recently used first
	writeAged(t, w, testKey, bs, time.Now().Add(-time.Hour), order)
	writeAged(t, w, otherKey, bs, time.Now().Add(-time.Minute), []int64{0}) // the most recent
	if err := w.SetSize(testKey, 5*bs); err != nil {
		t.Fatal(err)
	}

	// Prune sees blocks by mtime, through its own rescan, like the CLI does.
	c := testOpen(t, dir, 1<<40)
	for _, tc := range []struct {
		max     int64
		removed int
		gone    []int64 // blocks of testKey removed so far
	}{
		{6 * bs, 0, nil},
		{5*bs + 50, 1, []int64{3}}, // exactly down to the cap, not 90% of it
		{4 * bs, 1, []int64{3, 0}}, // a cap on a block boundary
		{2*bs + 1, 2, []int64{3, 0, 4, 1}},
	} {
		removed, freed, err := c.Prune(tc.max)
		if err != nil {
			t.Fatalf("Prune(%d): %v", tc.max, err)
		}
		if removed != tc.removed || freed != int64(tc.removed)*bs {
			t.Errorf("Prune(%d) = %d, %d; want %d, %d", tc.max, removed, freed, tc.removed, tc.removed*bs)
		}
		for _, idx := range order {
			if gone := slices.Contains(tc.gone, idx); exists(c.blockPath(blockID{testKey, bs, idx})) == gone {
				t.Errorf("after Prune(%d): block %d exists = %v, want %v", tc.max, idx, gone, !gone)
			}
		}
		if got, want := testOpen(t, dir, 1<<40).Usage(), int64(6-len(tc.gone))*bs; got != want {
			t.Errorf("after Prune(%d): Usage of a fresh Open = %d, want %d", tc.max, got, want)
		}
	}
	testHit(t, c, otherKey, bs, 0, bs)
	testHit(t, c, testKey, bs, 2, bs)
	if size, ok := c.Size(testKey); !ok || size != 5*bs {
		t.Errorf("Size after Prune = %d, %v: metadata must stay", size, ok)
	}

	// Everything, and the directories left empty with it.
	if removed, _, err := c.Prune(0); err != nil || removed != 2 || c.Usage() != 0 {
		t.Errorf("Prune(0) = %d, %v; Usage %d", removed, err, c.Usage())
	}
	if exists(filepath.Join(dir, version, "blocks", testKey.Build)) {
		t.Error("Prune(0) left the emptied build directory")
	}
	if _, _, err := c.Prune(-1); err == nil {
		t.Error("Prune(-1) succeeded")
	}
	c.Close()
	if _, _, err := c.Prune(0); err == nil {
		t.Error("Prune after Close succeeded")
	}
}

// TestPruneKeepsUsedBlocks checks that Prune removes only what it judged: a
// block another process used or rewrote after the scan is kept.
func TestPruneKeepsUsedBlocks(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	w := testOpen(t, dir, 1<<20)
	writeAged(t, w, testKey, bs, time.Now().Add(-time.Hour), []int64{0, 1, 2, 3})
	c := testOpen(t, dir, 1<<40)

	c.evictMu.Lock()
	if err := c.rescan(); err != nil {
		t.Fatal(err)
	}
	// After the scan, another mount reads block 0 (touching it) and
	// rewrites block 1; both were the least recently used.
	now := time.Now()
	if err := os.Chtimes(c.blockPath(blockID{testKey, bs, 0}), now, now); err != nil {
		t.Fatal(err)
	}
	testWrite(t, w, testKey, bs, 1, bs)
	removed, _, err := c.evictTo(2 * bs)
	c.evictMu.Unlock()
	if err != nil || removed != 2 {
		t.Fatalf("evictTo = %d, %v; want 2 removed", removed, err)
	}
	for idx, want := range []bool{true, true, false, false} {
		if got := exists(c.blockPath(blockID{testKey, bs, int64(idx)})); got != want {
			t.Errorf("block %d exists = %v, want %v", idx, got, want)
		}
	}
}

// TestPruneConcurrentWriter prunes while another Cache, as a mount would,
// writes and reads: no operation fails, no read returns wrong bytes, and
// once the writer stops, one Prune brings the directory to the cap.
func TestPruneConcurrentWriter(t *testing.T) {
	const bs, nblocks, max = 1000, 64, 10 * 1000
	dir := t.TempDir()
	w := testOpen(t, dir, 1<<30)
	c := testOpen(t, dir, 1<<40)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := int64(0); !stop.Load(); i++ {
			key := []Key{testKey, otherKey}[i%2]
			idx := i / 2 % nblocks
			if err := w.WriteBlock(key, bs, idx, testData(key, idx, bs)); err != nil {
				t.Errorf("WriteBlock: %v", err)
				return
			}
			if got, ok := read(w, key, bs, (idx+nblocks-1)%nblocks, bs); ok && !bytes.Equal(got, testData(key, (idx+nblocks-1)%nblocks, bs)) {
				t.Errorf("ReadBlock returned wrong bytes")
				return
			}
		}
	})
	for range 50 {
		if _, _, err := c.Prune(max); err != nil {
			t.Errorf("Prune: %v", err)
			break
		}
	}
	stop.Store(true)
	wg.Wait()

	if _, _, err := c.Prune(max); err != nil {
		t.Fatal(err)
	}
	st, err := StatDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.BlockBytes > max || st.BlockBytes != c.Usage() {
		t.Errorf("after the last Prune: %d block bytes on disk, Usage %d; want equal and at most %d", st.BlockBytes, c.Usage(), max)
	}
	r := testOpen(t, dir, 1<<40)
	for _, key := range []Key{testKey, otherKey} {
		for idx := range int64(nblocks) {
			if got, ok := read(r, key, bs, idx, bs); ok && !bytes.Equal(got, testData(key, idx, bs)) {
				t.Errorf("block %d of %s corrupt", idx, key)
			}
		}
	}
}

func TestClear(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	a := testOpen(t, dir, 1<<20)
	testWrite(t, a, testKey, bs, 0, bs)
	testWrite(t, a, otherKey, bs, 0, 10)
	if err := a.SetSize(testKey, bs); err != nil {
		t.Fatal(err)
	}
	if err := a.SetVerified(testKey, "abc"); err != nil {
		t.Fatal(err)
	}
	// Not the cache's: Clear leaves it. A tree left by an interrupted Clear
	// goes.
	mine := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(mine, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, clearPrefix+"123", version, "blocks"), 0o700); err != nil {
		t.Fatal(err)
	}

	if err := Clear(dir); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "notes.txt" {
		t.Fatalf("after Clear the directory holds %v (%v), want notes.txt alone", entries, err)
	}

	// A Cache that was using the directory misses, and stores again.
	testMiss(t, a, testKey, bs, 0, bs)
	if a.Verified(testKey, "abc") {
		t.Error("verified mark survived Clear")
	}
	testWrite(t, a, testKey, bs, 1, bs)
	testHit(t, a, testKey, bs, 1, bs)
	b := testOpen(t, dir, 1<<20)
	if _, ok := b.Size(testKey); ok {
		t.Error("size survived Clear")
	}
	if got := b.Usage(); got != bs {
		t.Errorf("Usage after Clear and one write = %d, want %d", got, bs)
	}

	if err := Clear(dir); err != nil {
		t.Errorf("second Clear: %v", err)
	}
	if err := Clear(dir); err != nil {
		t.Errorf("Clear of a cleared directory: %v", err)
	}
	if err := Clear(filepath.Join(dir, "missing")); err == nil {
		t.Error("Clear of a missing directory succeeded")
	}
}

// TestClearWhileWriting clears while a Cache writes and reads: reads only
// ever miss or return the right bytes, and writing works again afterwards.
func TestClearWhileWriting(t *testing.T) {
	const bs = 1000
	dir := t.TempDir()
	w := testOpen(t, dir, 1<<30)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := int64(0); !stop.Load(); i++ {
			idx := i % 32
			// A write in flight when the tree is moved away may fail.
			_ = w.WriteBlock(testKey, bs, idx, testData(testKey, idx, bs))
			if got, ok := read(w, testKey, bs, idx, bs); ok && !bytes.Equal(got, testData(testKey, idx, bs)) {
				t.Errorf("ReadBlock returned wrong bytes")
				return
			}
		}
	})
	for range 20 {
		if err := Clear(dir); err != nil {
			t.Errorf("Clear: %v", err)
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	testWrite(t, w, testKey, bs, 0, bs)
	testHit(t, w, testKey, bs, 0, bs)
}

func TestStatDir(t *testing.T) {
	const bs = 4096
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	testWrite(t, c, testKey, bs, 0, bs)
	testWrite(t, c, testKey, bs, 1, 10)
	testWrite(t, c, otherKey, bs, 0, bs)
	if err := c.SetSize(testKey, bs+10); err != nil {
		t.Fatal(err)
	}
	blockDir := filepath.Join(dir, version, "blocks", testKey.Build, testKey.Type)
	// Neither a temp file nor a file of no block's length is a block.
	for name, n := range map[string]int{tempPrefix + "1": bs, "4096-7": 3} {
		if err := os.WriteFile(filepath.Join(blockDir, name), make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	st, err := StatDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 3 || st.BlockBytes != 2*bs+10 || st.Files != 2 {
		t.Errorf("StatDir = %+v, want 3 blocks, %d bytes, 2 files", st, 2*bs+10)
	}
	// At least the bytes of every file; what more depends on the file system.
	if min := int64(3*bs + 10 + 3*trailerLen); st.DiskBytes < min {
		t.Errorf("DiskBytes = %d, want at least %d", st.DiskBytes, min)
	}

	// Through a symlink, as a cache directory may be given.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if got, err := StatDir(link); err != nil || got != st {
		t.Errorf("StatDir through a symlink = %+v, %v; want %+v", got, err, st)
	}
	if _, err := StatDir(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("StatDir of a missing directory: %v, want not exist", err)
	}
}
