// Package disk is a persistent cache of the blocks of build files, plus two
// facts about each file: its size and the checksum its blocks were verified
// against. It outlives the process, so a remount starts warm.
//
// The layout below the directory given to [Open] is
//
//	v1/blocks/<build>/<type>/<blockSize>-<idx>   one cached block
//	v1/meta/<build>/<type>/size                  byte size learnt for the file
//	v1/meta/<build>/<type>/verified              checksum the cached blocks were verified against
//
// Several processes (one per mount) may share a directory, each with its own
// [Cache], and they coordinate through the file system alone: there is no
// lock file and no index on disk. Every file is written to a temp file in its
// own directory and renamed into place, so a reader sees either no file or a
// whole one. Every file also ends in a trailer holding the payload length and
// its CRC-32C, so a file torn by a system crash (nothing is fsynced: a cache
// needs integrity, not durability) is recognised and removed instead of
// served. Recency lives in block mtimes, so it survives a remount and every
// process evicts by the same order.
//
// The block size is part of a block's name, so changing it never serves a
// block cut at other offsets, and the version directory lets a future
// format live beside this one rather than be misread by it.
package disk

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// touchEvery bounds how often a hit rewrites a block's mtime: often
	// enough for eviction order, rarely enough not to write on every read.
	touchEvery = time.Minute

	// Key parts become directory names; the caps keep paths short.
	maxBuildLen = 64
	maxTypeLen  = 16
)

var errClosed = errors.New("disk cache closed")

// Key names one downloadable file of one build. Builds are immutable, so
// the key names the same bytes forever (never key by URL: the storage URL
// changes on every token mint).
type Key struct {
	Build string // build id, 24 hex chars
	Type  string // download type: "auto", "file" or "aab"
}

// String returns "<build>/<type>".
func (k Key) String() string { return k.Build + "/" + k.Type }

// checkKey rejects keys whose parts could name anything but a single
// directory level below the cache root ("..", "/", empty, ...).
func checkKey(k Key) error {
	if !validPart(k.Build, maxBuildLen, true) {
		return fmt.Errorf("invalid build id %q", k.Build)
	}
	if !validPart(k.Type, maxTypeLen, false) {
		return fmt.Errorf("invalid download type %q", k.Type)
	}
	return nil
}

// validPart reports whether s is 1 to maxLen bytes of [a-z], plus [A-Z0-9]
// when alnum is set.
func validPart(s string, maxLen int, alnum bool) bool {
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

// blockID names one cached block.
type blockID struct {
	key       Key
	blockSize int64
	idx       int64
}

func checkBlock(id blockID) error {
	if err := checkKey(id.key); err != nil {
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

// Cache is a persistent cache of file blocks and per-file metadata, shared
// safely by every Cache (in this or other processes) opened on the same
// directory. Blocks are evicted least recently used first once their total
// exceeds the configured cap. All methods are safe for concurrent use.
type Cache struct {
	dir         string
	blocksDir   string
	metaDir     string
	maxBytes    int64
	rescanEvery time.Duration // defaultRescanEvery; tests shorten it

	closed   atomic.Bool
	direct   atomic.Bool  // block files through O_DIRECT
	lastScan atomic.Int64 // UnixNano when the last block scan started

	// evictMu serialises rescans and eviction, so concurrent writers that
	// all push usage over the cap do not all walk the tree.
	evictMu sync.Mutex

	mu    sync.Mutex
	index map[blockID]*entry
	lru   list.List // of *entry, most recently used at the front
	usage int64     // sum of index sizes
	seq   uint64    // bumped on every index insertion or rewrite
	sizes map[Key]int64

	trouble troubles
}

// entry is what a Cache knows about one stored block.
type entry struct {
	id      blockID
	size    int64     // payload bytes
	used    time.Time // last use, here or (learnt from the mtime) elsewhere
	touched time.Time // the block's mtime as last set or seen
	seq     uint64    // Cache.seq when inserted or rewritten
	elem    *list.Element
}

// Open opens (creating) a cache directory. maxBytes caps the bytes of cached
// blocks; 0 disables block storage (ReadBlock always misses, WriteBlock is a
// no-op) but sizes and verified marks are still kept.
//
// Opening scans the existing blocks to rebuild the LRU index, using each
// file's mtime as its recency, and removes temp files abandoned by writers
// that crashed.
func Open(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("open disk cache %s: negative size cap %d", dir, maxBytes)
	}
	c := &Cache{
		dir:         dir,
		blocksDir:   filepath.Join(dir, version, "blocks"),
		metaDir:     filepath.Join(dir, version, "meta"),
		maxBytes:    maxBytes,
		rescanEvery: defaultRescanEvery,
		index:       make(map[blockID]*entry),
		sizes:       make(map[Key]int64),
	}
	for _, p := range []string{c.blocksDir, c.metaDir} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("open disk cache %s: %w", dir, err)
		}
	}
	now := time.Now()
	if err := walk(c.metaDir, now, nil); err != nil {
		return nil, fmt.Errorf("open disk cache %s: %w", dir, err)
	}
	// Scan even when blocks are disabled, to sweep stale temp files.
	found, err := scanBlocks(c.blocksDir, now)
	if err != nil {
		return nil, fmt.Errorf("open disk cache %s: %w", dir, err)
	}
	c.lastScan.Store(now.UnixNano())
	if maxBytes > 0 {
		c.merge(found, 0)
		// The cap may have shrunk since the blocks were written.
		c.maintain(blockID{})
	}
	return c, nil
}

// Close marks the Cache closed: later reads miss and writes fail. Files stay
// on disk for the next Open.
func (c *Cache) Close() error {
	c.closed.Store(true)
	return nil
}

// Usage returns the payload bytes of blocks this Cache believes are stored.
// Blocks written by other processes are counted once this Cache has read
// them or rescanned the directory.
func (c *Cache) Usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.usage
}

func (c *Cache) blocksEnabled() bool { return c.maxBytes > 0 && !c.closed.Load() }

func (c *Cache) blockPath(id blockID) string {
	return filepath.Join(c.blocksDir, id.key.Build, id.key.Type, blockName(id.blockSize, id.idx))
}

func (c *Cache) metaPath(key Key, name string) string {
	return filepath.Join(c.metaDir, key.Build, key.Type, name)
}

// ReadBlock fills dst with block idx of key, as cached with the given
// blockSize, and reports whether it could: the block must be present,
// intact and exactly len(dst) bytes long. On false, dst holds garbage. A
// block that fails verification is removed so that it is fetched again.
func (c *Cache) ReadBlock(key Key, blockSize, idx int64, dst []byte) bool {
	id := blockID{key, blockSize, idx}
	if !c.blocksEnabled() || int64(len(dst)) > blockSize || checkBlock(id) != nil {
		return false
	}
	// Open the file even when the index does not list it: another process may
	// have stored it since our last scan.
	path := c.blockPath(id)
	ok, err := c.readBlockFile(path, dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.forget(id) // evicted by another process
		return false
	case err != nil:
		c.note(causeOf("read", err), "err", err.Error())
		return false
	case !ok:
		if c.reject(path, id) {
			c.note("a damaged block was removed", "block", path)
		}
		return false
	}
	c.noteHit(id, path, int64(len(dst)))
	return true
}

// readBlockFile reads the payload of a block file into dst, through
// O_DIRECT when c uses it and dst is aligned, and reports whether it is
// exactly len(dst) bytes that match their trailer.
func (c *Cache) readBlockFile(path string, dst []byte) (bool, error) {
	if c.direct.Load() && aligned(dst) {
		ok, err := readDirectFile(path, dst)
		if !refusedDirect(err) {
			return ok, err
		}
		c.directRefused(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// The payload straight into dst, then its trailer.
	if _, err := io.ReadFull(f, dst); err != nil {
		return false, nil
	}
	return trailerOK(f, dst), nil
}

// reject handles a block file that did not hold the verified bytes asked
// for. A file that is intact but of another length is kept, since the caller
// asked the wrong question; anything else is torn or corrupt and is removed.
// It reports whether the file was damaged.
func (c *Cache) reject(path string, id blockID) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	if n := st.Size() - trailerLen; n >= 0 && n <= id.blockSize {
		buf := make([]byte, st.Size())
		if _, err := f.ReadAt(buf, 0); err == nil && intact(buf, int(n)) {
			return false
		}
	}
	// Remove only the file we judged: another process may have just renamed
	// a good copy into its place.
	if cur, err := os.Lstat(path); err == nil && os.SameFile(st, cur) {
		_ = os.Remove(path)
	}
	c.forget(id)
	return true
}

// noteHit records a use of a block, adding it to the index if another
// process stored it, and occasionally refreshes its mtime so that recency
// survives a remount and is visible to other processes.
func (c *Cache) noteHit(id blockID, path string, size int64) {
	now := time.Now()
	c.mu.Lock()
	e := c.index[id]
	if e == nil {
		c.seq++
		e = &entry{id: id, size: size, seq: c.seq}
		e.elem = c.lru.PushFront(e)
		c.index[id] = e
		c.usage += size
	} else {
		c.lru.MoveToFront(e.elem)
	}
	e.used = now
	touch := now.Sub(e.touched) >= touchEvery
	if touch {
		e.touched = now
	}
	c.mu.Unlock()
	if touch {
		// Best effort: a block evicted meanwhile simply has no mtime to set.
		_ = os.Chtimes(path, now, now)
	}
}

// forget drops a block from the index; the caller has seen it is gone.
func (c *Cache) forget(id blockID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.index[id]; e != nil {
		c.unlink(e)
	}
}

// unlink removes e from the index. c.mu must be held.
func (c *Cache) unlink(e *entry) {
	delete(c.index, e.id)
	c.lru.Remove(e.elem)
	c.usage -= e.size
}

// WriteBlock stores block idx of key, cut with the given blockSize; it may
// evict least recently used blocks (of any file) to stay under the cap. A
// block larger than the whole cap is not stored.
func (c *Cache) WriteBlock(key Key, blockSize, idx int64, data []byte) error {
	id := blockID{key, blockSize, idx}
	if err := checkBlock(id); err != nil {
		return fmt.Errorf("write block %d of %s: %w", idx, key, err)
	}
	if int64(len(data)) > blockSize {
		return fmt.Errorf("write block %d of %s: %d bytes exceed block size %d", idx, key, len(data), blockSize)
	}
	if c.closed.Load() {
		return fmt.Errorf("write block %d of %s: %w", idx, key, errClosed)
	}
	size := int64(len(data))
	if c.maxBytes == 0 || size > c.maxBytes {
		return nil
	}
	path := c.blockPath(id)
	if err := c.writeBlockFile(path, data); err != nil {
		c.note(causeOf("write", err), "err", err.Error())
		return fmt.Errorf("write block %d of %s: %w", idx, key, err)
	}

	now := time.Now()
	c.mu.Lock()
	c.seq++
	e := c.index[id]
	if e == nil {
		e = &entry{id: id}
		e.elem = c.lru.PushFront(e)
		c.index[id] = e
	} else {
		c.lru.MoveToFront(e.elem)
		c.usage -= e.size
	}
	e.size, e.used, e.touched, e.seq = size, now, now, c.seq
	c.usage += size
	c.mu.Unlock()

	c.maintain(id)
	return nil
}

// maintain rescans the block tree when a rescan is due and evicts least
// recently used blocks, other than keep, while usage exceeds maxBytes.
//
// Other processes sharing the directory add blocks this index does not know
// of and evict blocks it still lists, so the index drifts from the disk. The
// periodic rescan bounds that drift to what is written in one rescan period.
func (c *Cache) maintain(keep blockID) {
	if !c.rescanDue() && c.Usage() <= c.maxBytes {
		return
	}
	c.evictMu.Lock()
	defer c.evictMu.Unlock()
	if c.rescanDue() {
		_ = c.rescan() // on error, eviction works from the index we have
	}
	for _, path := range c.pickVictims(keep) {
		// A victim already removed by another process is fine.
		_ = os.Remove(path)
	}
}

// pickVictims removes least recently used blocks from the index until
// usage is at most 90% of maxBytes, leaving headroom so that the next few
// writes do not each pay for an eviction, and returns their paths.
func (c *Cache) pickVictims(keep blockID) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.usage <= c.maxBytes {
		return nil
	}
	target := c.maxBytes - c.maxBytes/10
	var paths []string
	for el := c.lru.Back(); el != nil && c.usage > target; {
		e := el.Value.(*entry)
		el = el.Prev()
		if e.id == keep {
			continue
		}
		c.unlink(e)
		paths = append(paths, c.blockPath(e.id))
	}
	return paths
}

// DropFile removes every cached block and the verified mark of one file. Its
// size is kept: it is a fact about the build, not about the cached bytes.
func (c *Cache) DropFile(key Key) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("drop %s: %w", key, err)
	}
	c.mu.Lock()
	for id, e := range c.index {
		if id.key == key {
			c.unlink(e)
		}
	}
	c.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(c.blocksDir, key.Build, key.Type)); err != nil {
		return fmt.Errorf("drop blocks of %s: %w", key, err)
	}
	if err := os.Remove(c.metaPath(key, verifyName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop verified mark of %s: %w", key, err)
	}
	return nil
}

// Size returns the byte size persisted for key by SetSize.
func (c *Cache) Size(key Key) (int64, bool) {
	if c.closed.Load() || checkKey(key) != nil {
		return 0, false
	}
	c.mu.Lock()
	size, ok := c.sizes[key]
	c.mu.Unlock()
	if ok {
		return size, true
	}
	payload, ok := readFile(c.metaPath(key, sizeName))
	if !ok {
		return 0, false
	}
	size, err := strconv.ParseInt(string(payload), 10, 64)
	if err != nil || size < 0 {
		return 0, false
	}
	// A build's size never changes, so it can be remembered for good.
	c.mu.Lock()
	c.sizes[key] = size
	c.mu.Unlock()
	return size, true
}

// SetSize persists the byte size learnt for a file whose size the API does
// not report.
func (c *Cache) SetSize(key Key, size int64) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("set size of %s: %w", key, err)
	}
	if size < 0 {
		return fmt.Errorf("set size of %s: negative size %d", key, size)
	}
	if c.closed.Load() {
		return fmt.Errorf("set size of %s: %w", key, errClosed)
	}
	if err := writeFile(c.metaPath(key, sizeName), strconv.AppendInt(nil, size, 10)); err != nil {
		return fmt.Errorf("set size of %s: %w", key, err)
	}
	c.mu.Lock()
	c.sizes[key] = size
	c.mu.Unlock()
	return nil
}

// Verified reports whether SetVerified recorded exactly checksum for key. The
// mark is read from disk each time rather than remembered, so a DropFile by
// another process takes effect here too.
func (c *Cache) Verified(key Key, checksum string) bool {
	if checksum == "" || c.closed.Load() || checkKey(key) != nil {
		return false
	}
	payload, ok := readFile(c.metaPath(key, verifyName))
	return ok && string(payload) == checksum
}

// SetVerified persists that key's cached blocks were checked against the API
// checksum.
func (c *Cache) SetVerified(key Key, checksum string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("set verified mark of %s: %w", key, err)
	}
	if checksum == "" {
		return fmt.Errorf("set verified mark of %s: empty checksum", key)
	}
	if c.closed.Load() {
		return fmt.Errorf("set verified mark of %s: %w", key, errClosed)
	}
	if err := writeFile(c.metaPath(key, verifyName), []byte(checksum)); err != nil {
		return fmt.Errorf("set verified mark of %s: %w", key, err)
	}
	return nil
}

// ClearVerified removes a file's verified mark: blocks not covered by the
// check that set it are about to be stored.
func (c *Cache) ClearVerified(key Key) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("clear verified mark of %s: %w", key, err)
	}
	if err := os.Remove(c.metaPath(key, verifyName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear verified mark of %s: %w", key, err)
	}
	return nil
}
