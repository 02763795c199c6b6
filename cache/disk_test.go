package cache

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
)

var (
	diskTestKey   = FileKey{Build: "0123456789abcdef01234567", Type: "file"}
	diskTestOther = FileKey{Build: "fedcba9876543210fedcba98", Type: "aab"}
)

// diskTestData returns n bytes that depend on key, idx and n, so a block
// served for the wrong key, index or length is noticed.
func diskTestData(key FileKey, idx int64, n int) []byte {
	seed := fmt.Sprintf("%s#%d#%d|", key, idx, n)
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func diskTestOpen(t *testing.T, dir string, maxBytes int64) *Disk {
	t.Helper()
	d, err := OpenDisk(dir, maxBytes)
	if err != nil {
		t.Fatalf("OpenDisk(%q, %d): %v", dir, maxBytes, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func diskTestWrite(t *testing.T, d *Disk, key FileKey, blockSize, idx int64, n int) {
	t.Helper()
	if err := d.WriteBlock(key, blockSize, idx, diskTestData(key, idx, n)); err != nil {
		t.Fatalf("WriteBlock(%s, %d, %d): %v", key, blockSize, idx, err)
	}
}

// diskTestHit fails unless block idx of key reads back as written with n bytes.
func diskTestHit(t *testing.T, d *Disk, key FileKey, blockSize, idx int64, n int) {
	t.Helper()
	got, ok := d.ReadBlock(key, blockSize, idx, n)
	if !ok {
		t.Fatalf("ReadBlock(%s, %d, %d, %d) missed, want hit", key, blockSize, idx, n)
	}
	if want := diskTestData(key, idx, n); !bytes.Equal(got, want) {
		t.Fatalf("ReadBlock(%s, %d, %d, %d) returned wrong bytes", key, blockSize, idx, n)
	}
}

func diskTestMiss(t *testing.T, d *Disk, key FileKey, blockSize, idx int64, n int) {
	t.Helper()
	if _, ok := d.ReadBlock(key, blockSize, idx, n); ok {
		t.Fatalf("ReadBlock(%s, %d, %d, %d) hit, want miss", key, blockSize, idx, n)
	}
}

func diskTestExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestDiskRoundTrip(t *testing.T) {
	d := diskTestOpen(t, t.TempDir(), 1<<30)
	const bs = 4 << 20
	if d.HasBlock(diskTestKey, bs, 0) {
		t.Fatal("HasBlock on empty cache = true")
	}
	diskTestMiss(t, d, diskTestKey, bs, 0, bs)

	diskTestWrite(t, d, diskTestKey, bs, 0, bs)
	diskTestWrite(t, d, diskTestKey, bs, 1, 1234) // short last block
	diskTestWrite(t, d, diskTestKey, bs, 2, 0)    // empty file
	diskTestHit(t, d, diskTestKey, bs, 0, bs)
	diskTestHit(t, d, diskTestKey, bs, 1, 1234)
	diskTestHit(t, d, diskTestKey, bs, 2, 0)
	if !d.HasBlock(diskTestKey, bs, 1) {
		t.Error("HasBlock after WriteBlock = false")
	}
	if got, want := d.Usage(), int64(bs+1234); got != want {
		t.Errorf("Usage = %d, want %d", got, want)
	}

	// Another block size or another file is another block.
	diskTestMiss(t, d, diskTestKey, bs/2, 0, bs/2)
	diskTestMiss(t, d, diskTestOther, bs, 0, bs)

	// Rewriting a block does not count it twice.
	diskTestWrite(t, d, diskTestKey, bs, 1, 1234)
	if got, want := d.Usage(), int64(bs+1234); got != want {
		t.Errorf("Usage after rewrite = %d, want %d", got, want)
	}

	if err := d.WriteBlock(diskTestKey, 100, 0, make([]byte, 101)); err == nil {
		t.Error("WriteBlock of more than blockSize bytes succeeded")
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	diskTestMiss(t, d, diskTestKey, bs, 1, 1234)
	if err := d.WriteBlock(diskTestKey, bs, 3, []byte("x")); !errors.Is(err, errDiskClosed) {
		t.Errorf("WriteBlock after Close = %v, want %v", err, errDiskClosed)
	}
}

func TestDiskReopen(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	diskTestWrite(t, d, diskTestKey, 1000, 0, 1000)
	diskTestWrite(t, d, diskTestKey, 1000, 1, 10)
	if err := d.SetSize(diskTestKey, 1010); err != nil {
		t.Fatal(err)
	}
	if err := d.SetVerified(diskTestKey, "sha1:abc"); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d = diskTestOpen(t, dir, 1<<20)
	if d.Dir() != dir {
		t.Errorf("Dir = %q, want %q", d.Dir(), dir)
	}
	if got := d.Usage(); got != 1010 {
		t.Errorf("Usage after reopen = %d, want 1010", got)
	}
	diskTestHit(t, d, diskTestKey, 1000, 0, 1000)
	diskTestHit(t, d, diskTestKey, 1000, 1, 10)
	if size, ok := d.Size(diskTestKey); !ok || size != 1010 {
		t.Errorf("Size after reopen = %d, %v; want 1010, true", size, ok)
	}
	if !d.Verified(diskTestKey, "sha1:abc") {
		t.Error("Verified after reopen = false")
	}
}

func TestDiskTornBlock(t *testing.T) {
	const bs, n = 1000, 600
	damages := map[string]func(path string) error{
		"truncated": func(path string) error { return os.Truncate(path, n/2) },
		"trailer cut": func(path string) error {
			return os.Truncate(path, n+diskTrailerLen-1)
		},
		"empty": func(path string) error { return os.Truncate(path, 0) },
		"payload byte flipped": func(path string) error {
			return diskTestFlip(path, n/3)
		},
		"trailer byte flipped": func(path string) error {
			return diskTestFlip(path, n+9)
		},
	}
	for name, damage := range damages {
		for _, reopen := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", name, reopen), func(t *testing.T) {
				dir := t.TempDir()
				d := diskTestOpen(t, dir, 1<<20)
				diskTestWrite(t, d, diskTestKey, bs, 0, n)
				path := d.diskBlockPath(diskBlockID{diskTestKey, bs, 0})
				if err := damage(path); err != nil {
					t.Fatal(err)
				}
				if reopen {
					d.Close()
					d = diskTestOpen(t, dir, 1<<20)
				}
				diskTestMiss(t, d, diskTestKey, bs, 0, n)
				if diskTestExists(path) {
					t.Error("damaged block file still exists after the miss")
				}
				if d.HasBlock(diskTestKey, bs, 0) {
					t.Error("HasBlock of a damaged block = true after the miss")
				}
				if got := d.Usage(); got != 0 {
					t.Errorf("Usage = %d, want 0", got)
				}
				// The block can be stored again.
				diskTestWrite(t, d, diskTestKey, bs, 0, n)
				diskTestHit(t, d, diskTestKey, bs, 0, n)
			})
		}
	}
}

func diskTestFlip(path string, off int64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[off] ^= 0x40
	return os.WriteFile(path, b, 0o600)
}

func TestDiskTempFiles(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	diskTestWrite(t, d, diskTestKey, 100, 0, 100)
	if err := d.SetSize(diskTestKey, 100); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// A crashed writer leaves temp files beside the blocks and the metadata;
	// one left by a live writer is recent.
	blockDir := filepath.Join(dir, diskVersion, "blocks", diskTestKey.Build, diskTestKey.Type)
	metaDir := filepath.Join(dir, diskVersion, "meta", diskTestKey.Build, diskTestKey.Type)
	stale := []string{filepath.Join(blockDir, diskTempPrefix+"1"), filepath.Join(metaDir, diskTempPrefix+"2")}
	fresh := filepath.Join(blockDir, diskTempPrefix+"3")
	old := time.Now().Add(-2 * diskStaleTemp)
	for _, p := range append(stale, fresh) {
		if err := os.WriteFile(p, diskTestData(diskTestKey, 1, 100), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range stale {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	d = diskTestOpen(t, dir, 1<<20)
	for _, p := range stale {
		if diskTestExists(p) {
			t.Errorf("stale temp file %s survived OpenDisk", p)
		}
	}
	if !diskTestExists(fresh) {
		t.Errorf("recent temp file %s was removed", fresh)
	}
	if got := d.Usage(); got != 100 {
		t.Errorf("Usage = %d, want 100 (temp files are not blocks)", got)
	}
	diskTestMiss(t, d, diskTestKey, 100, 1, 100)
	diskTestHit(t, d, diskTestKey, 100, 0, 100)
}

func TestDiskWrongLength(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	diskTestWrite(t, d, diskTestKey, 1000, 0, 500)
	path := d.diskBlockPath(diskBlockID{diskTestKey, 1000, 0})
	for _, reopen := range []bool{false, true} {
		if reopen {
			d.Close()
			d = diskTestOpen(t, dir, 1<<20)
		}
		for _, want := range []int{0, 499, 501, 1000, 1001, -1} {
			diskTestMiss(t, d, diskTestKey, 1000, 0, want)
		}
		// An intact block asked for with the wrong length is kept.
		if !diskTestExists(path) {
			t.Fatalf("reopen=%v: intact block removed after a wrong-length read", reopen)
		}
		diskTestHit(t, d, diskTestKey, 1000, 0, 500)
	}
}

func TestDiskEvictLRU(t *testing.T) {
	const bs = 100
	d := diskTestOpen(t, t.TempDir(), 10*bs)
	for i := range int64(10) {
		diskTestWrite(t, d, diskTestKey, bs, i, bs)
	}
	if got := d.Usage(); got != 10*bs {
		t.Fatalf("Usage = %d, want %d (at the cap, nothing evicted)", got, 10*bs)
	}
	diskTestHit(t, d, diskTestKey, bs, 0, bs) // 0 becomes the most recent

	// Going over the cap evicts down to 90%: the two least recently used.
	diskTestWrite(t, d, diskTestKey, bs, 10, bs)
	if got := d.Usage(); got != 9*bs {
		t.Errorf("Usage = %d, want %d", got, 9*bs)
	}
	for i := range int64(11) {
		evicted := i == 1 || i == 2
		path := d.diskBlockPath(diskBlockID{diskTestKey, bs, i})
		if has := d.HasBlock(diskTestKey, bs, i); has == evicted || diskTestExists(path) == evicted {
			t.Errorf("block %d: HasBlock = %v, file exists = %v; want evicted = %v", i, has, diskTestExists(path), evicted)
		}
	}

	// A block larger than the whole cache is not stored and evicts nothing.
	if err := d.WriteBlock(diskTestOther, 100*bs, 0, make([]byte, 11*bs)); err != nil {
		t.Fatal(err)
	}
	if d.HasBlock(diskTestOther, 100*bs, 0) || d.Usage() != 9*bs {
		t.Errorf("oversized block: HasBlock = %v, Usage = %d", d.HasBlock(diskTestOther, 100*bs, 0), d.Usage())
	}
}

func TestDiskEvictOnOpenByMtime(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	base := time.Now().Add(-time.Hour)
	for i := range int64(5) {
		diskTestWrite(t, d, diskTestKey, bs, i, bs)
		// Block 0 was used last, then 4, 3, 2, 1.
		mtime := base.Add(time.Duration(i) * time.Minute)
		if i == 0 {
			mtime = base.Add(time.Hour)
		}
		if err := os.Chtimes(d.diskBlockPath(diskBlockID{diskTestKey, bs, i}), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()

	// Reopening with a smaller cap evicts to 90% of it, oldest mtime first.
	d = diskTestOpen(t, dir, 3*bs)
	if got := d.Usage(); got != 2*bs {
		t.Errorf("Usage = %d, want %d", got, 2*bs)
	}
	for i := range int64(5) {
		if has, want := d.HasBlock(diskTestKey, bs, i), i == 0 || i == 4; has != want {
			t.Errorf("block %d: HasBlock = %v, want %v", i, has, want)
		}
	}
}

func TestDiskHitTouchesMtime(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	diskTestWrite(t, d, diskTestKey, 100, 0, 100)
	path := d.diskBlockPath(diskBlockID{diskTestKey, 100, 0})
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d = diskTestOpen(t, dir, 1<<20)
	diskTestHit(t, d, diskTestKey, 100, 0, 100)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(st.ModTime()); age > time.Minute {
		t.Errorf("mtime is %v old after a hit, want refreshed", age)
	}
}

func TestDiskDisabledBlocks(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 0)
	if err := d.WriteBlock(diskTestKey, 100, 0, diskTestData(diskTestKey, 0, 100)); err != nil {
		t.Fatalf("WriteBlock with blocks disabled: %v", err)
	}
	diskTestMiss(t, d, diskTestKey, 100, 0, 100)
	if d.HasBlock(diskTestKey, 100, 0) || d.Usage() != 0 {
		t.Errorf("HasBlock = %v, Usage = %d; want false, 0", d.HasBlock(diskTestKey, 100, 0), d.Usage())
	}
	if diskTestExists(filepath.Join(dir, diskVersion, "blocks", diskTestKey.Build)) {
		t.Error("a block directory was created with blocks disabled")
	}
	if err := d.SetSize(diskTestKey, 12345); err != nil {
		t.Fatal(err)
	}
	if err := d.SetVerified(diskTestKey, "abc"); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d = diskTestOpen(t, dir, 0)
	if size, ok := d.Size(diskTestKey); !ok || size != 12345 {
		t.Errorf("Size = %d, %v; want 12345, true", size, ok)
	}
	if !d.Verified(diskTestKey, "abc") {
		t.Error("Verified = false")
	}
	if _, err := OpenDisk(dir, -1); err == nil {
		t.Error("OpenDisk with a negative cap succeeded")
	}
}

func TestDiskSizes(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	if _, ok := d.Size(diskTestKey); ok {
		t.Error("Size of unknown file ok")
	}
	if err := d.SetSize(diskTestKey, -1); err == nil {
		t.Error("SetSize(-1) succeeded")
	}
	for _, size := range []int64{0, 1 << 40} {
		if err := d.SetSize(diskTestKey, size); err != nil {
			t.Fatal(err)
		}
		// A fresh Disk reads it from the file rather than from memory.
		if got, ok := diskTestOpen(t, dir, 1<<20).Size(diskTestKey); !ok || got != size {
			t.Errorf("Size = %d, %v; want %d, true", got, ok, size)
		}
	}
	// A corrupt size file is a miss, not a wrong size.
	path := d.diskMetaPath(diskTestKey, diskSizeName)
	if err := diskTestFlip(path, 0); err != nil {
		t.Fatal(err)
	}
	if got, ok := diskTestOpen(t, dir, 1<<20).Size(diskTestKey); ok {
		t.Errorf("Size from corrupt file = %d, true; want miss", got)
	}
}

func TestDiskVerified(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	if d.Verified(diskTestKey, "abc") {
		t.Error("Verified before SetVerified = true")
	}
	if err := d.SetVerified(diskTestKey, "abc"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key      FileKey
		checksum string
		want     bool
	}{
		{diskTestKey, "abc", true},
		{diskTestKey, "abd", false},
		{diskTestKey, "ab", false},
		{diskTestKey, "", false},
		{diskTestOther, "abc", false},
	} {
		if got := d.Verified(tc.key, tc.checksum); got != tc.want {
			t.Errorf("Verified(%s, %q) = %v, want %v", tc.key, tc.checksum, got, tc.want)
		}
	}
	if err := d.SetVerified(diskTestKey, ""); err == nil {
		t.Error("SetVerified with an empty checksum succeeded")
	}
	if err := d.SetVerified(diskTestKey, "xyz"); err != nil {
		t.Fatal(err)
	}
	if d.Verified(diskTestKey, "abc") || !d.Verified(diskTestKey, "xyz") {
		t.Error("SetVerified did not replace the previous checksum")
	}
}

func TestDiskDropFile(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	for _, key := range []FileKey{diskTestKey, diskTestOther} {
		for i := range int64(3) {
			diskTestWrite(t, d, key, 100, i, 100)
		}
		if err := d.SetSize(key, 300); err != nil {
			t.Fatal(err)
		}
		if err := d.SetVerified(key, "sum"); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.DropFile(diskTestKey); err != nil {
		t.Fatal(err)
	}
	if err := d.DropFile(diskTestKey); err != nil {
		t.Errorf("second DropFile: %v", err)
	}
	if got := d.Usage(); got != 300 {
		t.Errorf("Usage = %d, want 300", got)
	}

	// Check both this Disk and a fresh one, which knows only the files.
	for _, d := range []*Disk{d, diskTestOpen(t, dir, 1<<20)} {
		for i := range int64(3) {
			diskTestMiss(t, d, diskTestKey, 100, i, 100)
			diskTestHit(t, d, diskTestOther, 100, i, 100)
		}
		if d.Verified(diskTestKey, "sum") || !d.Verified(diskTestOther, "sum") {
			t.Error("DropFile removed the wrong verified mark")
		}
		if size, ok := d.Size(diskTestKey); !ok || size != 300 {
			t.Errorf("Size after DropFile = %d, %v; want 300, true", size, ok)
		}
	}
}

func TestDiskInvalidKeys(t *testing.T) {
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	bad := []FileKey{
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
		if err := d.WriteBlock(key, 100, 0, []byte("x")); err == nil {
			t.Errorf("WriteBlock(%q) succeeded", key)
		}
		if _, ok := d.ReadBlock(key, 100, 0, 1); ok {
			t.Errorf("ReadBlock(%q) hit", key)
		}
		if d.HasBlock(key, 100, 0) {
			t.Errorf("HasBlock(%q) = true", key)
		}
		if err := d.SetSize(key, 1); err == nil {
			t.Errorf("SetSize(%q) succeeded", key)
		}
		if _, ok := d.Size(key); ok {
			t.Errorf("Size(%q) ok", key)
		}
		if err := d.SetVerified(key, "x"); err == nil {
			t.Errorf("SetVerified(%q) succeeded", key)
		}
		if d.Verified(key, "x") {
			t.Errorf("Verified(%q) = true", key)
		}
		if err := d.DropFile(key); err == nil {
			t.Errorf("DropFile(%q) succeeded", key)
		}
	}
	for _, tc := range []struct{ blockSize, idx int64 }{{0, 0}, {-1, 0}, {100, -1}} {
		if err := d.WriteBlock(diskTestKey, tc.blockSize, tc.idx, nil); err == nil {
			t.Errorf("WriteBlock(blockSize %d, idx %d) succeeded", tc.blockSize, tc.idx)
		}
	}
	// The longest valid parts are accepted.
	long := FileKey{Build: strings.Repeat("Z9", 32), Type: strings.Repeat("z", 16)}
	diskTestWrite(t, d, long, 100, 0, 10)
	diskTestHit(t, d, long, 100, 0, 10)

	// Nothing was written outside the cache's own tree.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != diskVersion {
		t.Errorf("cache dir holds %v, want only %s", entries, diskVersion)
	}
}

func TestDiskWriteError(t *testing.T) {
	// A regular file where a directory belongs fails writes even for root.
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	for _, sub := range []string{"blocks", "meta"} {
		if err := os.WriteFile(filepath.Join(dir, diskVersion, sub, diskTestKey.Build), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := d.WriteBlock(diskTestKey, 100, 7, []byte("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "write block 7 of "+diskTestKey.String()+": ") {
		t.Errorf("WriteBlock error = %v, want one naming the block", err)
	}
	if err := d.SetSize(diskTestKey, 1); err == nil {
		t.Error("SetSize succeeded")
	}
	if err := d.SetVerified(diskTestKey, "x"); err == nil {
		t.Error("SetVerified succeeded")
	}
}

func TestDiskWritePermission(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("permissions do not stop root")
	}
	dir := t.TempDir()
	d := diskTestOpen(t, dir, 1<<20)
	blocks := filepath.Join(dir, diskVersion, "blocks")
	meta := filepath.Join(dir, diskVersion, "meta")
	for _, p := range []string{blocks, meta} {
		if err := os.Chmod(p, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(p, 0o700) })
	}
	err := d.WriteBlock(diskTestKey, 100, 7, []byte("x"))
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "write block 7 of "+diskTestKey.String()) {
		t.Errorf("WriteBlock error = %v, want a wrapped permission error", err)
	}
	if err := d.SetSize(diskTestKey, 1); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("SetSize error = %v, want a wrapped permission error", err)
	}
}

// TestDiskSharedEviction checks that a Disk accounts for blocks another
// process stored once it rescans, and evicts them too.
func TestDiskSharedEviction(t *testing.T) {
	const bs = 100
	dir := t.TempDir()
	a := diskTestOpen(t, dir, 10*bs)
	b := diskTestOpen(t, dir, 10*bs)
	b.rescanEvery = 0
	for i := range int64(6) {
		diskTestWrite(t, a, diskTestKey, bs, i, bs)
	}
	for i := range int64(5) {
		diskTestWrite(t, b, diskTestOther, bs, i, bs)
	}
	if got := b.Usage(); got != 9*bs {
		t.Errorf("b.Usage = %d, want %d", got, 9*bs)
	}
	files := 0
	for _, key := range []FileKey{diskTestKey, diskTestOther} {
		for i := range int64(6) {
			if diskTestExists(b.diskBlockPath(diskBlockID{key, bs, i})) {
				files++
			}
		}
	}
	if files != 9 {
		t.Errorf("%d block files on disk, want 9", files)
	}
	for i := range int64(5) {
		diskTestHit(t, b, diskTestOther, bs, i, bs)
	}
	// a learns of its evicted blocks by missing them.
	for i := range int64(6) {
		a.ReadBlock(diskTestKey, bs, i, bs)
	}
	if got := a.Usage(); got != 4*bs {
		t.Errorf("a.Usage = %d, want %d", got, 4*bs)
	}
}

// TestDiskConcurrent runs two Disks on one directory, as two mounts would,
// with many goroutines writing, reading and evicting at once. Every hit must
// return exactly the bytes written.
func TestDiskConcurrent(t *testing.T) {
	const (
		bs      = 4096
		nblocks = 16
		workers = 4
		rounds  = 300
	)
	dir := t.TempDir()
	disks := []*Disk{diskTestOpen(t, dir, 24*bs), diskTestOpen(t, dir, 24*bs)}
	disks[1].rescanEvery = time.Millisecond
	keys := []FileKey{diskTestKey, diskTestOther, {Build: "aaaaaaaaaaaaaaaaaaaaaaaa", Type: "auto"}}
	blockLen := func(idx int64) int {
		if idx == nblocks-1 {
			return 1000 // the short last block
		}
		return bs
	}

	var wg sync.WaitGroup
	for w := range 2 * workers {
		d := disks[w%2]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				key := keys[rng.IntN(len(keys))]
				idx := rng.Int64N(nblocks)
				n := blockLen(idx)
				switch op := rng.IntN(10); {
				case op < 4:
					if err := d.WriteBlock(key, bs, idx, diskTestData(key, idx, n)); err != nil {
						t.Errorf("WriteBlock: %v", err)
						return
					}
				case op < 9:
					if got, ok := d.ReadBlock(key, bs, idx, n); ok && !bytes.Equal(got, diskTestData(key, idx, n)) {
						t.Errorf("ReadBlock(%s, %d) returned wrong bytes", key, idx)
						return
					}
				default:
					d.HasBlock(key, bs, idx)
				}
			}
		})
	}
	wg.Wait()

	// Reads may have learnt of blocks the other Disk stored, so the cap is
	// only enforced again by a write; one that rescans sees the whole tree.
	for _, d := range disks {
		d.rescanEvery = 0
		diskTestWrite(t, d, keys[0], bs, 0, bs)
		if u := d.Usage(); u < 0 || u > 24*bs {
			t.Errorf("Usage = %d, want within [0, %d]", u, 24*bs)
		}
	}
	var onDisk int64
	filepath.WalkDir(filepath.Join(dir, diskVersion, "blocks"), func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			info, _ := e.Info()
			onDisk += info.Size() - diskTrailerLen
		}
		return nil
	})
	if onDisk > 24*bs {
		t.Errorf("%d block bytes on disk after rescanning writes, want at most %d", onDisk, 24*bs)
	}
	// Whatever survived is intact and readable by a third Disk.
	d := diskTestOpen(t, dir, 1<<30)
	for _, key := range keys {
		for idx := range int64(nblocks) {
			if got, ok := d.ReadBlock(key, bs, idx, blockLen(idx)); ok && !bytes.Equal(got, diskTestData(key, idx, blockLen(idx))) {
				t.Errorf("block %d of %s corrupt after concurrent use", idx, key)
			}
		}
	}
}
