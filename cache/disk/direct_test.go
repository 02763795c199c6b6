package disk

import (
	"bytes"
	"os"
	"runtime"
	"testing"
)

// Block files written and read with and without O_DIRECT are the same
// bytes, whatever the length against the page size, so a cache directory
// moves freely between mounts that use it and mounts that cannot.
func TestDirectIO(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("O_DIRECT is Linux's")
	}
	lengths := []int{0, 1, 100, directAlign - trailerLen, directAlign - 1, directAlign, directAlign + 1,
		3*directAlign + 17, 1<<20 - 5, 1 << 20}
	for _, tc := range []struct {
		name          string
		write, readIt bool // direct?
	}{{"direct", true, true}, {"written direct, read buffered", true, false}, {"written buffered, read direct", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := testOpen(t, dir, 1<<30)
			w.SetDirectIO(tc.write)
			r := testOpen(t, dir, 1<<30)
			r.SetDirectIO(tc.readIt)
			for i, n := range lengths {
				idx := int64(i)
				testWrite(t, w, testKey, 1<<20, idx, n)
				st, err := os.Stat(w.blockPath(blockID{testKey, 1 << 20, idx}))
				if err != nil || st.Size() != int64(n+trailerLen) {
					t.Fatalf("block of %d bytes: file of %v bytes (%v), want %d", n, st.Size(), err, n+trailerLen)
				}
				testHit(t, r, testKey, 1<<20, idx, n)
				testMiss(t, r, testKey, 1<<20, idx, n+1)
				if n > 0 {
					testMiss(t, r, testKey, 1<<20, idx, n-1)
				}
				testHit(t, r, testKey, 1<<20, idx, n) // a wrong-length read keeps an intact block
			}
			if w.DirectIO() != tc.write || r.DirectIO() != tc.readIt {
				t.Errorf("direct I/O turned itself off on %s", dir)
			}
		})
	}
}

// A flipped byte in a block written directly is found on a direct read,
// and the block removed.
func TestDirectIOCorruption(t *testing.T) {
	c := testOpen(t, t.TempDir(), 1<<30)
	n := 2*directAlign + 300
	testWrite(t, c, testKey, 1<<20, 0, n)
	path := c.blockPath(blockID{testKey, 1 << 20, 0})
	for _, at := range []int{5, directAlign + 1, n - 1, n + 3} { // payload pages, tail, trailer
		b, err := os.ReadFile(path)
		if err != nil {
			testWrite(t, c, testKey, 1<<20, 0, n)
			b, _ = os.ReadFile(path)
		}
		good := bytes.Clone(b)
		b[at] ^= 0x40
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		testMiss(t, c, testKey, 1<<20, 0, n)
		if exists(path) {
			t.Fatalf("byte %d flipped: damaged block kept", at)
		}
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		testHit(t, c, testKey, 1<<20, 0, n)
	}
}

// A file system without O_DIRECT (tmpfs) turns it off, once, and the cache
// goes on through the page cache.
func TestDirectIORefused(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "appliveryfs-direct-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := testOpen(t, dir, 1<<30)
	probe, err := os.OpenFile(dir+"/probe", os.O_CREATE|os.O_WRONLY|oDirect, 0o600)
	if err == nil {
		probe.Close()
		t.Skip("/dev/shm takes O_DIRECT here")
	}
	testWrite(t, c, testKey, 1<<20, 0, 3*directAlign)
	testHit(t, c, testKey, 1<<20, 0, 3*directAlign)
	if c.DirectIO() {
		t.Error("direct I/O still on after the file system refused it")
	}
}
