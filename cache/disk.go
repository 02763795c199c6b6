package cache

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// On-disk layout below the directory given to OpenDisk:
//
//	v1/blocks/<build>/<type>/<blockSize>-<idx>   one cached block
//	v1/meta/<build>/<type>/size                  byte size learnt for the file
//	v1/meta/<build>/<type>/verified              checksum the cached blocks were verified against
//
// Every file holds its payload followed by a trailer (see diskTrailer), so a
// file torn by a crash is recognised instead of served. Files are written to a
// temp file in the same directory and renamed into place, which lets several
// processes share the directory: readers see either nothing or a whole file.
// The version directory lets a future format live beside this one rather than
// be misread by it.
const (
	diskVersion    = "v1"
	diskTempPrefix = ".tmp-"
	diskSizeName   = "size"
	diskVerifyName = "verified"

	// diskTrailerLen is the size of the trailer: payload length (8 bytes),
	// CRC-32C of the payload (4 bytes) and diskMagic, all little endian.
	diskTrailerLen = 16

	// diskStaleTemp is how old a temp file must be before a scan deletes it;
	// no live writer holds one anywhere near that long.
	diskStaleTemp = time.Hour
	// diskTouchEvery bounds how often a hit rewrites a block's mtime, which is
	// how recency survives a remount and reaches other processes.
	diskTouchEvery = time.Minute
	// diskRescanEvery bounds how often a write rescans the block tree to learn
	// what other processes added or evicted.
	diskRescanEvery = time.Minute

	diskMaxBuildLen = 64
	diskMaxTypeLen  = 16
)

var (
	diskMagic      = [4]byte{'a', 'f', 'b', '1'}
	diskCastagnoli = crc32.MakeTable(crc32.Castagnoli)

	errDiskClosed = errors.New("disk cache closed")
)

// FileKey names one downloadable file of one build. Builds are immutable, so
// the key names the same bytes forever (never key by URL: the storage URL
// changes on every token mint).
type FileKey struct {
	Build string // build id, 24 hex chars
	Type  string // download type: "auto", "file" or "aab"
}

// String returns "<build>/<type>".
func (k FileKey) String() string { return k.Build + "/" + k.Type }

// diskCheckKey rejects keys whose parts could name anything but a single
// directory level below the cache root ("..", "/", empty, ...).
func diskCheckKey(k FileKey) error {
	if !diskValidPart(k.Build, diskMaxBuildLen, true) {
		return fmt.Errorf("invalid build id %q", k.Build)
	}
	if !diskValidPart(k.Type, diskMaxTypeLen, false) {
		return fmt.Errorf("invalid download type %q", k.Type)
	}
	return nil
}

// diskValidPart reports whether s is 1 to maxLen bytes of [a-z], plus [A-Z0-9]
// when alnum is set.
func diskValidPart(s string, maxLen int, alnum bool) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
		case alnum && ('A' <= c && c <= 'Z' || '0' <= c && c <= '9'):
		default:
			return false
		}
	}
	return true
}

// diskBlockID names one cached block. The block size is part of the name so
// that changing the block size never serves a block cut at other offsets.
type diskBlockID struct {
	key       FileKey
	blockSize int64
	idx       int64
}

func diskCheckBlock(id diskBlockID) error {
	if err := diskCheckKey(id.key); err != nil {
		return err
	}
	if id.blockSize <= 0 {
		return fmt.Errorf("invalid block size %d", id.blockSize)
	}
	if id.idx < 0 {
		return fmt.Errorf("invalid block index %d", id.idx)
	}
	return nil
}

// diskBlockName is the file name of a block within its file's directory.
func diskBlockName(blockSize, idx int64) string {
	return strconv.FormatInt(blockSize, 10) + "-" + strconv.FormatInt(idx, 10)
}

// diskParseBlockName inverts diskBlockName. Only the canonical spelling is
// accepted, so the path rebuilt from the result names the same file.
func diskParseBlockName(name string) (blockSize, idx int64, ok bool) {
	bs, ix, found := strings.Cut(name, "-")
	if !found {
		return 0, 0, false
	}
	blockSize, err1 := strconv.ParseInt(bs, 10, 64)
	idx, err2 := strconv.ParseInt(ix, 10, 64)
	if err1 != nil || err2 != nil || blockSize <= 0 || idx < 0 || diskBlockName(blockSize, idx) != name {
		return 0, 0, false
	}
	return blockSize, idx, true
}

// Disk is a persistent cache of file blocks and per-file metadata, shared
// safely by every Disk (in this or other processes) opened on the same
// directory. Blocks are evicted least recently used first once their total
// exceeds the configured cap. All methods are safe for concurrent use.
type Disk struct {
	dir         string
	blocksDir   string
	metaDir     string
	maxBytes    int64
	rescanEvery time.Duration // diskRescanEvery; tests shorten it

	closed   atomic.Bool
	lastScan atomic.Int64 // UnixNano when the last block scan started

	// evictMu serialises rescans and eviction, so concurrent writers that
	// all push usage over the cap do not all walk the tree.
	evictMu sync.Mutex

	mu    sync.Mutex
	index map[diskBlockID]*diskEntry
	lru   list.List // of *diskEntry, most recently used at the front
	usage int64     // sum of index sizes
	seq   uint64    // bumped on every index insertion or rewrite
	sizes map[FileKey]int64
}

// diskEntry is what a Disk knows about one stored block.
type diskEntry struct {
	id      diskBlockID
	size    int64     // payload bytes
	used    time.Time // last use, here or (learnt from the mtime) elsewhere
	touched time.Time // the block's mtime as last set or seen
	seq     uint64    // Disk.seq when inserted or rewritten
	elem    *list.Element
}

// OpenDisk opens (creating) a cache directory. maxBytes caps the bytes of
// cached blocks; 0 disables block storage (ReadBlock always misses, WriteBlock
// is a no-op) but sizes and verified marks are still kept.
//
// Opening scans the existing blocks to rebuild the LRU index, using each
// file's mtime as its recency, and removes temp files abandoned by writers
// that crashed.
func OpenDisk(dir string, maxBytes int64) (*Disk, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("open disk cache %s: negative size cap %d", dir, maxBytes)
	}
	d := &Disk{
		dir:         dir,
		blocksDir:   filepath.Join(dir, diskVersion, "blocks"),
		metaDir:     filepath.Join(dir, diskVersion, "meta"),
		maxBytes:    maxBytes,
		rescanEvery: diskRescanEvery,
		index:       make(map[diskBlockID]*diskEntry),
		sizes:       make(map[FileKey]int64),
	}
	for _, p := range []string{d.blocksDir, d.metaDir} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("open disk cache %s: %w", dir, err)
		}
	}
	now := time.Now()
	if err := diskWalk(d.metaDir, now, nil); err != nil {
		return nil, fmt.Errorf("open disk cache %s: %w", dir, err)
	}
	// Scan even when blocks are disabled, to sweep stale temp files.
	found, err := diskScanBlocks(d.blocksDir, now)
	if err != nil {
		return nil, fmt.Errorf("open disk cache %s: %w", dir, err)
	}
	d.lastScan.Store(now.UnixNano())
	if maxBytes > 0 {
		d.diskMerge(found, 0)
		// The cap may have shrunk since the blocks were written.
		d.diskMaintain(diskBlockID{})
	}
	return d, nil
}

// Dir returns the directory the Disk was opened on.
func (d *Disk) Dir() string { return d.dir }

// Close marks the Disk closed: later reads miss and writes fail. Files stay
// on disk for the next OpenDisk.
func (d *Disk) Close() error {
	d.closed.Store(true)
	return nil
}

// Usage returns the payload bytes of blocks this Disk believes are stored.
// Blocks written by other processes are counted once this Disk has read them
// or rescanned the directory.
func (d *Disk) Usage() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage
}

func (d *Disk) diskBlocksEnabled() bool { return d.maxBytes > 0 && !d.closed.Load() }

func (d *Disk) diskBlockPath(id diskBlockID) string {
	return filepath.Join(d.blocksDir, id.key.Build, id.key.Type, diskBlockName(id.blockSize, id.idx))
}

func (d *Disk) diskMetaPath(key FileKey, name string) string {
	return filepath.Join(d.metaDir, key.Build, key.Type, name)
}

// ReadBlock returns block idx of key, cached with the given blockSize, only if
// it is present, intact, and exactly want bytes long. A block that fails
// verification is removed so that it is fetched again.
func (d *Disk) ReadBlock(key FileKey, blockSize int64, idx int64, want int) ([]byte, bool) {
	if want < 0 || int64(want) > blockSize {
		return nil, false
	}
	buf := make([]byte, want)
	if !d.ReadBlockInto(key, blockSize, idx, buf) {
		return nil, false
	}
	return buf, true
}

// ReadBlockInto is ReadBlock into the caller's buffer: it fills dst with
// the block, which must be exactly len(dst) bytes long, and reports
// whether it could. On false, dst holds garbage.
func (d *Disk) ReadBlockInto(key FileKey, blockSize int64, idx int64, dst []byte) bool {
	id := diskBlockID{key, blockSize, idx}
	want := len(dst)
	if !d.diskBlocksEnabled() || int64(want) > blockSize || diskCheckBlock(id) != nil {
		return false
	}
	// Open the file even when the index does not list it: another process may
	// have stored it since our last scan.
	path := d.diskBlockPath(id)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.diskForget(id) // evicted by another process
		}
		return false
	}
	defer f.Close()
	// The payload straight into dst, then its trailer.
	var trailer [diskTrailerLen]byte
	if _, err := io.ReadFull(f, dst); err != nil || !d.diskTrailerOK(f, dst, trailer[:]) {
		d.diskReject(f, path, id)
		return false
	}
	d.diskNoteHit(id, path, int64(want))
	return true
}

// diskTrailerOK reads the trailer that follows payload in f, checks that
// nothing follows it, and verifies payload against it.
func (d *Disk) diskTrailerOK(f *os.File, payload, trailer []byte) bool {
	n, err := io.ReadFull(f, trailer)
	if err != nil || n != diskTrailerLen {
		return false
	}
	var extra [1]byte
	if m, _ := f.Read(extra[:]); m != 0 {
		return false // longer than asked: a block of another length
	}
	return diskTrailerMatches(trailer, payload)
}

// diskReject handles a block file that did not hold want verified bytes. A
// file that is intact but of another length is kept, since the caller asked
// the wrong question; anything else is torn or corrupt and is removed.
func (d *Disk) diskReject(f *os.File, path string, id diskBlockID) {
	st, err := f.Stat()
	if err != nil {
		return
	}
	if n := st.Size() - diskTrailerLen; n >= 0 && n <= id.blockSize {
		buf := make([]byte, st.Size())
		if _, err := f.ReadAt(buf, 0); err == nil && diskIntact(buf, int(n)) {
			return
		}
	}
	// Remove only the file we judged: another process may have just renamed
	// a good copy into its place.
	if cur, err := os.Lstat(path); err == nil && os.SameFile(st, cur) {
		_ = os.Remove(path)
	}
	d.diskForget(id)
}

// diskNoteHit records a use of a block, adding it to the index if another
// process stored it, and occasionally refreshes its mtime so that recency
// survives a remount and is visible to other processes.
func (d *Disk) diskNoteHit(id diskBlockID, path string, size int64) {
	now := time.Now()
	d.mu.Lock()
	e := d.index[id]
	if e == nil {
		d.seq++
		e = &diskEntry{id: id, size: size, seq: d.seq}
		e.elem = d.lru.PushFront(e)
		d.index[id] = e
		d.usage += size
	} else {
		d.lru.MoveToFront(e.elem)
	}
	e.used = now
	touch := now.Sub(e.touched) >= diskTouchEvery
	if touch {
		e.touched = now
	}
	d.mu.Unlock()
	if touch {
		// Best effort: a block evicted meanwhile simply has no mtime to set.
		_ = os.Chtimes(path, now, now)
	}
}

// diskForget drops a block from the index; the caller has seen it is gone.
func (d *Disk) diskForget(id diskBlockID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.index[id]; e != nil {
		d.diskUnlink(e)
	}
}

// diskUnlink removes e from the index. d.mu must be held.
func (d *Disk) diskUnlink(e *diskEntry) {
	delete(d.index, e.id)
	d.lru.Remove(e.elem)
	d.usage -= e.size
}

// HasBlock reports whether block idx of key is stored, without reading or
// verifying it, so a true result may still be followed by a miss.
func (d *Disk) HasBlock(key FileKey, blockSize int64, idx int64) bool {
	id := diskBlockID{key, blockSize, idx}
	if !d.diskBlocksEnabled() || diskCheckBlock(id) != nil {
		return false
	}
	d.mu.Lock()
	_, ok := d.index[id]
	d.mu.Unlock()
	if ok {
		return true
	}
	// Another process may have stored it since our last scan.
	_, err := os.Stat(d.diskBlockPath(id))
	return err == nil
}

// WriteBlock stores a block; it may evict least-recently-used blocks (of any
// file) to stay under maxBytes. A block larger than maxBytes is not stored.
func (d *Disk) WriteBlock(key FileKey, blockSize int64, idx int64, data []byte) error {
	id := diskBlockID{key, blockSize, idx}
	if err := diskCheckBlock(id); err != nil {
		return fmt.Errorf("write block %d of %s: %w", idx, key, err)
	}
	if int64(len(data)) > blockSize {
		return fmt.Errorf("write block %d of %s: %d bytes exceed block size %d", idx, key, len(data), blockSize)
	}
	if d.closed.Load() {
		return fmt.Errorf("write block %d of %s: %w", idx, key, errDiskClosed)
	}
	size := int64(len(data))
	if d.maxBytes == 0 || size > d.maxBytes {
		return nil
	}
	path := d.diskBlockPath(id)
	if err := diskWriteFile(path, data); err != nil {
		return fmt.Errorf("write block %d of %s: %w", idx, key, err)
	}

	now := time.Now()
	d.mu.Lock()
	d.seq++
	e := d.index[id]
	if e == nil {
		e = &diskEntry{id: id}
		e.elem = d.lru.PushFront(e)
		d.index[id] = e
	} else {
		d.lru.MoveToFront(e.elem)
		d.usage -= e.size
	}
	e.size, e.used, e.touched, e.seq = size, now, now, d.seq
	d.usage += size
	d.mu.Unlock()

	d.diskMaintain(id)
	return nil
}

// diskMaintain rescans the block tree when a rescan is due and evicts least
// recently used blocks, other than keep, while usage exceeds maxBytes.
//
// Other processes sharing the directory add blocks this index does not know
// of and evict blocks it still lists, so the index drifts from the disk. The
// periodic rescan bounds that drift to what is written in one rescan period.
func (d *Disk) diskMaintain(keep diskBlockID) {
	if !d.diskRescanDue() && d.Usage() <= d.maxBytes {
		return
	}
	d.evictMu.Lock()
	defer d.evictMu.Unlock()
	if d.diskRescanDue() {
		d.diskRescan()
	}
	for _, path := range d.diskPickVictims(keep) {
		// A victim already removed by another process is fine.
		_ = os.Remove(path)
	}
}

func (d *Disk) diskRescanDue() bool {
	return time.Since(time.Unix(0, d.lastScan.Load())) >= d.rescanEvery
}

// diskPickVictims removes least recently used blocks from the index until
// usage is at most 90% of maxBytes, leaving headroom so that the next few
// writes do not each pay for an eviction, and returns their paths.
func (d *Disk) diskPickVictims(keep diskBlockID) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.usage <= d.maxBytes {
		return nil
	}
	target := d.maxBytes - d.maxBytes/10
	var paths []string
	for el := d.lru.Back(); el != nil && d.usage > target; {
		e := el.Value.(*diskEntry)
		el = el.Prev()
		if e.id == keep {
			continue
		}
		d.diskUnlink(e)
		paths = append(paths, d.diskBlockPath(e.id))
	}
	return paths
}

// diskRescan brings the index in line with the block tree. d.evictMu must be
// held.
func (d *Disk) diskRescan() {
	d.mu.Lock()
	before := d.seq
	d.mu.Unlock()
	now := time.Now()
	found, err := diskScanBlocks(d.blocksDir, now)
	d.lastScan.Store(now.UnixNano())
	if err != nil {
		return // keep the index we have; eviction still works from it
	}
	d.diskMerge(found, before)
}

// diskMerge folds a scan into the index: blocks found are added or have
// their recency raised to their mtime, and indexed blocks not found are
// dropped unless they were written after the scan began (seq > before). The
// recency list is then rebuilt in order of last use.
func (d *Disk) diskMerge(found []diskScanned, before uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[diskBlockID]bool, len(found))
	for _, f := range found {
		seen[f.id] = true
		e := d.index[f.id]
		if e == nil {
			d.seq++
			e = &diskEntry{id: f.id, used: f.mtime, touched: f.mtime, seq: d.seq}
			d.index[f.id] = e
		} else {
			d.usage -= e.size
			if f.mtime.After(e.used) {
				e.used = f.mtime // touched by another process
			}
			if f.mtime.After(e.touched) {
				e.touched = f.mtime
			}
		}
		e.size = f.size
		d.usage += f.size
	}
	for id, e := range d.index {
		if !seen[id] && e.seq <= before {
			delete(d.index, id)
			d.usage -= e.size
		}
	}
	entries := make([]*diskEntry, 0, len(d.index))
	for _, e := range d.index {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *diskEntry) int { return a.used.Compare(b.used) })
	d.lru.Init()
	for _, e := range entries {
		e.elem = d.lru.PushFront(e)
	}
}

// DropFile removes every cached block and the verified mark of one file. Its
// size is kept: it is a fact about the build, not about the cached bytes.
func (d *Disk) DropFile(key FileKey) error {
	if err := diskCheckKey(key); err != nil {
		return fmt.Errorf("drop %s: %w", key, err)
	}
	d.mu.Lock()
	for id, e := range d.index {
		if id.key == key {
			d.diskUnlink(e)
		}
	}
	d.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(d.blocksDir, key.Build, key.Type)); err != nil {
		return fmt.Errorf("drop blocks of %s: %w", key, err)
	}
	if err := os.Remove(d.diskMetaPath(key, diskVerifyName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop verified mark of %s: %w", key, err)
	}
	return nil
}

// Size returns the byte size persisted for key by SetSize.
func (d *Disk) Size(key FileKey) (int64, bool) {
	if d.closed.Load() || diskCheckKey(key) != nil {
		return 0, false
	}
	d.mu.Lock()
	size, ok := d.sizes[key]
	d.mu.Unlock()
	if ok {
		return size, true
	}
	payload, ok := diskReadFile(d.diskMetaPath(key, diskSizeName))
	if !ok {
		return 0, false
	}
	size, err := strconv.ParseInt(string(payload), 10, 64)
	if err != nil || size < 0 {
		return 0, false
	}
	// A build's size never changes, so it can be remembered for good.
	d.mu.Lock()
	d.sizes[key] = size
	d.mu.Unlock()
	return size, true
}

// SetSize persists the byte size learnt for a file whose size the API does
// not report.
func (d *Disk) SetSize(key FileKey, size int64) error {
	if err := diskCheckKey(key); err != nil {
		return fmt.Errorf("set size of %s: %w", key, err)
	}
	if size < 0 {
		return fmt.Errorf("set size of %s: negative size %d", key, size)
	}
	if d.closed.Load() {
		return fmt.Errorf("set size of %s: %w", key, errDiskClosed)
	}
	if err := diskWriteFile(d.diskMetaPath(key, diskSizeName), strconv.AppendInt(nil, size, 10)); err != nil {
		return fmt.Errorf("set size of %s: %w", key, err)
	}
	d.mu.Lock()
	d.sizes[key] = size
	d.mu.Unlock()
	return nil
}

// Verified reports whether SetVerified recorded exactly checksum for key. The
// mark is read from disk each time rather than remembered, so a DropFile by
// another process takes effect here too.
func (d *Disk) Verified(key FileKey, checksum string) bool {
	if checksum == "" || d.closed.Load() || diskCheckKey(key) != nil {
		return false
	}
	payload, ok := diskReadFile(d.diskMetaPath(key, diskVerifyName))
	return ok && string(payload) == checksum
}

// SetVerified persists that key's cached blocks were checked against the API
// checksum.
func (d *Disk) SetVerified(key FileKey, checksum string) error {
	if err := diskCheckKey(key); err != nil {
		return fmt.Errorf("set verified mark of %s: %w", key, err)
	}
	if checksum == "" {
		return fmt.Errorf("set verified mark of %s: empty checksum", key)
	}
	if d.closed.Load() {
		return fmt.Errorf("set verified mark of %s: %w", key, errDiskClosed)
	}
	if err := diskWriteFile(d.diskMetaPath(key, diskVerifyName), []byte(checksum)); err != nil {
		return fmt.Errorf("set verified mark of %s: %w", key, err)
	}
	return nil
}

// ClearVerified removes a file's verified mark: blocks not covered by the
// check that set it are about to be stored.
func (d *Disk) ClearVerified(key FileKey) error {
	if err := diskCheckKey(key); err != nil {
		return fmt.Errorf("clear verified mark of %s: %w", key, err)
	}
	if err := os.Remove(d.diskMetaPath(key, diskVerifyName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear verified mark of %s: %w", key, err)
	}
	return nil
}

// diskTrailer returns the trailer stored after payload.
func diskTrailer(payload []byte) []byte {
	t := make([]byte, diskTrailerLen)
	binary.LittleEndian.PutUint64(t[0:8], uint64(len(payload)))
	binary.LittleEndian.PutUint32(t[8:12], crc32.Checksum(payload, diskCastagnoli))
	copy(t[12:], diskMagic[:])
	return t
}

// diskIntact reports whether buf is exactly n payload bytes followed by their
// trailer.
func diskIntact(buf []byte, n int) bool {
	if n < 0 || len(buf) != n+diskTrailerLen {
		return false
	}
	return diskTrailerMatches(buf[n:], buf[:n])
}

// diskTrailerMatches checks a trailer (length, CRC-32C, magic) against its payload.
func diskTrailerMatches(t, payload []byte) bool {
	return len(t) == diskTrailerLen && [4]byte(t[12:16]) == diskMagic &&
		binary.LittleEndian.Uint64(t[0:8]) == uint64(len(payload)) &&
		binary.LittleEndian.Uint32(t[8:12]) == crc32.Checksum(payload, diskCastagnoli)
}

// diskWriteFile atomically replaces path with payload and its trailer.
//
// There is deliberately no fsync: a cache needs integrity, not durability.
// The trailer catches whatever a crash leaves torn, and a lost block is just
// fetched again.
func diskWriteFile(path string, payload []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, diskTempPrefix+"*")
	// First write for this file, or a scan (of this or another process)
	// removed the empty directory, possibly again right after we made it.
	for try := 0; errors.Is(err, fs.ErrNotExist) && try < 5; try++ {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = os.CreateTemp(dir, diskTempPrefix+"*")
		}
	}
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(payload)
	if err == nil {
		_, err = f.Write(diskTrailer(payload))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// diskReadFile returns the verified payload of a file written by
// diskWriteFile.
func diskReadFile(path string) ([]byte, bool) {
	buf, err := os.ReadFile(path)
	if err != nil || !diskIntact(buf, len(buf)-diskTrailerLen) {
		return nil, false
	}
	return buf[:len(buf)-diskTrailerLen], true
}

// diskScanned is one block found by diskScanBlocks.
type diskScanned struct {
	id    diskBlockID
	size  int64 // payload bytes
	mtime time.Time
}

// diskScanBlocks lists the blocks stored under root. Files whose length no
// intact block could have are removed on the way.
func diskScanBlocks(root string, now time.Time) ([]diskScanned, error) {
	var found []diskScanned
	err := diskWalk(root, now, func(key FileKey, path string, info fs.FileInfo) {
		blockSize, idx, ok := diskParseBlockName(info.Name())
		if !ok || !info.Mode().IsRegular() {
			return // not ours; leave it alone
		}
		size := info.Size() - diskTrailerLen
		if size < 0 || size > blockSize {
			_ = os.Remove(path)
			return
		}
		found = append(found, diskScanned{diskBlockID{key, blockSize, idx}, size, info.ModTime()})
	})
	return found, err
}

// diskWalk calls visit (if not nil) for each file of a <build>/<type>/ tree
// under root. On the way it removes temp files older than diskStaleTemp, left
// by writers that crashed, and directories left empty by eviction, so that
// neither accumulates. Only an unreadable root is an error; anything below
// that cannot be read is skipped.
func diskWalk(root string, now time.Time, visit func(key FileKey, path string, info fs.FileInfo)) error {
	builds, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, b := range builds {
		if !b.IsDir() || !diskValidPart(b.Name(), diskMaxBuildLen, true) {
			continue
		}
		buildDir := filepath.Join(root, b.Name())
		types, err := os.ReadDir(buildDir)
		if err != nil {
			continue
		}
		emptied := 0
		for _, t := range types {
			key := FileKey{Build: b.Name(), Type: t.Name()}
			if !t.IsDir() || diskCheckKey(key) != nil {
				continue
			}
			typeDir := filepath.Join(buildDir, t.Name())
			files, err := os.ReadDir(typeDir)
			if err != nil {
				continue
			}
			if len(files) == 0 {
				// Fails harmlessly if a writer has just put a file in it.
				if os.Remove(typeDir) == nil {
					emptied++
				}
				continue
			}
			for _, f := range files {
				temp := strings.HasPrefix(f.Name(), diskTempPrefix)
				if !temp && visit == nil {
					continue
				}
				info, err := f.Info()
				if err != nil {
					continue // removed since ReadDir
				}
				path := filepath.Join(typeDir, f.Name())
				switch {
				case temp && now.Sub(info.ModTime()) > diskStaleTemp:
					_ = os.Remove(path)
				case !temp:
					visit(key, path, info)
				}
			}
		}
		if emptied == len(types) {
			_ = os.Remove(buildDir)
		}
	}
	return nil
}
