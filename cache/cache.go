// Package cache keeps the bytes of immutable build files: an in-memory LRU
// of fixed-size blocks under one byte budget, shared by every open file,
// in front of an optional persistent disk cache, with a sequential
// prefetcher per reader.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Source is where a file's bytes come from when no cache has them.
// ReadAtProgress fills p from off, calling progress with the count of
// leading bytes of p that are final as they arrive.
type Source interface {
	ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(done int)) (int, error)
}

// Config sizes a Cache.
type Config struct {
	BlockSize   int64         // bytes per block; default 4 MiB
	MemoryBytes int64         // budget for cached, in-flight and queued-for-disk blocks; default 256 MiB
	Disk        *Disk         // persistent cache; nil for none
	IOTimeout   time.Duration // bound on fetching one block; default 60 s
	MaxAhead    int           // prefetch window cap, in blocks; default 16
	MaxFetches  int           // storage requests in flight for prefetch, all files; default 32
}

// Stats counts what the cache did; for logs, tests and the benchmark.
type Stats struct {
	MemHits      int64 // block reads served from memory
	DiskHits     int64 // blocks loaded from the disk cache
	Fetches      int64 // blocks fetched from the source
	FetchedBytes int64
	Prefetches   int64 // fetches started ahead of the reader
	Verified     int64 // whole files checked against their checksum
	Mismatches   int64 // ... and found wrong
}

// Cache is safe for concurrent use.
type Cache struct {
	cfg   Config
	slots int // blocks the memory budget holds
	lru   *lru.Cache[blockKey, *block]

	mu        sync.Mutex
	inflight  map[blockKey]*block
	fetching  int          // prefetches in flight
	queuedOut atomic.Int64 // blocks evicted from the LRU but still waiting for a disk write

	freedMu sync.Mutex    // apart from mu: the LRU's evict callback takes it
	freed   chan struct{} // closed (and replaced) when a memory slot frees up

	stats struct {
		memHits, diskHits, fetches, fetchedBytes, prefetches, verified, mismatches atomic.Int64
	}

	diskWrites chan diskWrite
	base       context.Context // parent of every fill; Close cancels it
	stop       context.CancelFunc
	fills      sync.WaitGroup
	closeOnce  sync.Once
	writers    sync.WaitGroup
}

type blockKey struct {
	file FileKey
	idx  int64
}

type diskWrite struct {
	key   blockKey
	block *block
	file  *File
}

// New returns a cache. Close it to flush pending disk writes.
func New(cfg Config) (*Cache, error) {
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = 4 << 20
	}
	if cfg.BlockSize < 64<<10 || cfg.BlockSize > 64<<20 {
		return nil, fmt.Errorf("block size %d out of range (64 KiB to 64 MiB)", cfg.BlockSize)
	}
	if cfg.MemoryBytes <= 0 {
		cfg.MemoryBytes = 256 << 20
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 60 * time.Second
	}
	if cfg.MaxAhead <= 0 {
		cfg.MaxAhead = 16
	}
	if cfg.MaxFetches <= 0 {
		cfg.MaxFetches = 32
	}
	slots := int(cfg.MemoryBytes / cfg.BlockSize)
	if slots < 4 {
		return nil, fmt.Errorf("memory budget %d holds fewer than 4 blocks of %d bytes", cfg.MemoryBytes, cfg.BlockSize)
	}
	// Prefetch may use at most half the budget, so demand reads and cached
	// data of other files always have room.
	if m := slots / 2; cfg.MaxAhead > m {
		cfg.MaxAhead = m
	}
	base, stop := context.WithCancel(context.Background())
	c := &Cache{
		base:     base,
		stop:     stop,
		cfg:      cfg,
		slots:    slots,
		inflight: make(map[blockKey]*block),
		freed:    make(chan struct{}),
	}
	l, err := lru.NewWithEvict[blockKey, *block](slots, c.evicted)
	if err != nil {
		return nil, err
	}
	c.lru = l
	if cfg.Disk != nil {
		// Queued blocks count against the memory budget (queuedOut), so a
		// disk slower than the network slows fetching instead of growing memory.
		c.diskWrites = make(chan diskWrite, 8)
		for range 2 {
			c.writers.Add(1)
			go c.diskWriter()
		}
	}
	return c, nil
}

// Close cancels fetches still running and waits for queued disk writes.
// The cache must not be used after.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.stop() // under mu: acquire checks base before adding a fill
		c.mu.Unlock()
		c.fills.Wait()
		if c.diskWrites != nil {
			close(c.diskWrites)
		}
		c.writers.Wait()
	})
}

// Stats returns counters since New.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		MemHits: s.memHits.Load(), DiskHits: s.diskHits.Load(), Fetches: s.fetches.Load(),
		FetchedBytes: s.fetchedBytes.Load(), Prefetches: s.prefetches.Load(),
		Verified: s.verified.Load(), Mismatches: s.mismatches.Load(),
	}
}

func (c *Cache) diskWriter() {
	defer c.writers.Done()
	for w := range c.diskWrites {
		// A write from before a drop (a checksum mismatch) is stale.
		if w.file.gen.Load() == w.block.gen {
			// A failed write (disk full) only costs a refetch later.
			_ = c.cfg.Disk.WriteBlock(w.key.file, c.cfg.BlockSize, w.key.idx, w.block.data)
		}
		if old := w.block.disk.And(^int32(blockQueued)); old&blockEvicted != 0 {
			c.queuedOut.Add(-1)
		}
		c.signalFreed()
	}
}

func (c *Cache) signalFreed() {
	c.freedMu.Lock()
	close(c.freed)
	c.freed = make(chan struct{})
	c.freedMu.Unlock()
}

func (c *Cache) freedChan() chan struct{} {
	c.freedMu.Lock()
	defer c.freedMu.Unlock()
	return c.freed
}

// block is one block of a file, complete or being filled.
type block struct {
	data  []byte     // final length; immutable once filled
	state *fillState // who wants the fill; what a hold keeps
	gen   uint64     // the file's generation when the fill started
	// disk holds blockQueued while a disk write holds data, and
	// blockEvicted once the LRU let go: a block both queued and evicted
	// is memory the budget must still count.
	disk atomic.Int32

	mu     sync.Mutex
	filled int           // leading bytes of data that are final
	err    error         // set when the fill failed
	done   bool          // fill finished, with or without err
	wake   chan struct{} // closed and replaced whenever filled, err or done change
}

// fillState counts who still wants a fill: readers waiting for it and
// prefetchers that started it. When the last one lets go of an unfinished
// fill (Ctrl-C on cp), its request is cancelled. It holds no data, so a
// reader's holds never keep blocks alive past the cache's budget.
type fillState struct {
	mu        sync.Mutex
	refs      int
	done      bool
	cancelled bool // let go of by everyone: joining it would only get its error
	cancel    context.CancelFunc
}

// release drops interest, cancelling the fill if nobody else wants it.
func (s *fillState) release() {
	s.mu.Lock()
	s.refs--
	orphan := s.refs <= 0 && !s.done
	if orphan {
		s.cancelled = true
	}
	s.mu.Unlock()
	if orphan {
		s.cancel()
	}
}

// join takes a hold on a fill unless it was cancelled. A finished fill
// was never cancelled, so joining a cached block always succeeds.
func (s *fillState) join() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancelled {
		return false
	}
	s.refs++
	return true
}

func (s *fillState) finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (b *block) release() { b.state.release() }

const (
	blockQueued  = 1
	blockEvicted = 2
)

func (b *block) progress(n int) {
	b.mu.Lock()
	if n > b.filled {
		b.filled = n
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
}

func (b *block) finish(err error) {
	b.mu.Lock()
	b.err, b.done = err, true
	if err == nil {
		b.filled = len(b.data)
	}
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
	b.state.mu.Lock()
	b.state.done = true
	b.state.mu.Unlock()
}

// complete reports whether every byte of the block is final.
func (b *block) complete() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.filled == len(b.data)
}

// waitFor blocks until the first n bytes are final, the fill fails, or ctx ends.
func (b *block) waitFor(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		filled, err, done, wake := b.filled, b.err, b.done, b.wake
		b.mu.Unlock()
		switch {
		case filled >= n:
			return nil
		case err != nil:
			return err
		case done:
			return fmt.Errorf("block ended after %d of %d bytes", filled, n)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errNoRoom means a prefetch found the memory budget taken; it is not an error for readers.
var errNoRoom = errors.New("memory budget full")

// acquire returns the block for key, cached or in flight, or starts
// filling it, with a hold the caller must release. A demand read may wait
// for memory; a prefetch never does.
func (c *Cache) acquire(ctx context.Context, f *File, idx int64, demand bool) (*block, error) {
	key := blockKey{f.key, idx}
	for {
		if b, ok := c.lru.Get(key); ok && b.state.join() {
			c.stats.memHits.Add(1)
			return b, nil
		}
		c.mu.Lock()
		if b, ok := c.inflight[key]; ok && b.state.join() {
			c.mu.Unlock()
			return b, nil
		}
		if !demand && c.fetching >= c.cfg.MaxFetches {
			c.mu.Unlock()
			return nil, errNoRoom
		}
		// Make room: in-flight blocks and blocks waiting for a disk write
		// count against the budget like cached ones, but only cached ones
		// can be evicted. A prefetch that could not fit even then evicts
		// nothing.
		limit := c.slots
		if !demand {
			limit = c.slots - c.slots/4 // keep a quarter for demand reads
		}
		if !demand && c.pinnedLocked() >= limit {
			c.mu.Unlock()
			return nil, errNoRoom
		}
		for c.usedLocked() >= limit && c.lru.Len() > 0 {
			c.mu.Unlock()
			c.lru.RemoveOldest()
			c.mu.Lock()
		}
		// Making room let go of mu: another reader may have started this
		// very block meanwhile.
		if b, ok := c.inflight[key]; ok && b.state.join() {
			c.mu.Unlock()
			return b, nil
		}
		if c.usedLocked() >= limit {
			wait := c.freedChan()
			c.mu.Unlock()
			if !demand {
				return nil, errNoRoom
			}
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if _, ok := c.lru.Peek(key); ok { // filled while we made room
			c.mu.Unlock()
			continue
		}
		if c.base.Err() != nil {
			c.mu.Unlock()
			return nil, errors.New("cache closed")
		}
		b := &block{data: make([]byte, f.blockLen(idx)), wake: make(chan struct{}), state: &fillState{refs: 1}, gen: f.gen.Load()}
		fctx, cancel := context.WithTimeout(c.base, c.cfg.IOTimeout)
		b.state.cancel = cancel
		c.inflight[key] = b
		if !demand {
			c.fetching++
			c.stats.prefetches.Add(1)
		}
		c.fills.Add(1)
		c.mu.Unlock()
		go c.fill(fctx, f, key, b, !demand)
		return b, nil
	}
}

// fill loads a block from disk or the source. It runs detached from any
// reader: a reader that gives up must not fail the others waiting.
func (c *Cache) fill(ctx context.Context, f *File, key blockKey, b *block, prefetch bool) {
	defer c.fills.Done()
	defer b.state.cancel()
	var err error
	fromDisk := false
	if d := c.cfg.Disk; d != nil {
		if d.ReadBlockInto(key.file, c.cfg.BlockSize, key.idx, b.data) {
			fromDisk = true
			c.stats.diskHits.Add(1)
		}
	}
	if !fromDisk {
		// Before the first byte can reach a reader: bytes from storage are
		// not covered by a check an earlier run made.
		f.needVerify()
		var n int
		n, err = f.src.ReadAtProgress(ctx, b.data, key.idx*c.cfg.BlockSize, b.progress)
		if err == nil && n < len(b.data) {
			err = fmt.Errorf("source ended at %d of %d bytes", n, len(b.data))
		}
		if err != nil {
			err = fmt.Errorf("fetch block %d of %s: %w", key.idx, key.file, err)
		} else {
			c.stats.fetches.Add(1)
			c.stats.fetchedBytes.Add(int64(n))
		}
	}
	// Bytes fetched before the file was dropped (a checksum mismatch) are
	// served to the readers that waited for them, but not kept.
	keep := err == nil && b.gen == f.gen.Load()
	queue := keep && !fromDisk && c.diskWrites != nil
	if queue {
		b.disk.Store(blockQueued)
	}
	// Move the block from in flight to cached in one step, so that the
	// budget never sees it in neither place (and admits one block too many).
	c.mu.Lock()
	if keep {
		c.lru.Add(key, b)
	}
	if c.inflight[key] == b {
		delete(c.inflight, key)
	}
	if prefetch {
		c.fetching--
	}
	c.mu.Unlock()
	c.signalFreed() // a failed block frees its slot; a cached one can now be evicted
	b.finish(err)
	if !keep {
		return
	}
	// Hash in order as blocks arrive, off the readers' path; the read
	// that completes the file completes the check (see File.ReadAt).
	f.feedDigest()
	if queue {
		c.diskWrites <- diskWrite{key: key, block: b, file: f}
	}
}

// usedLocked is the memory in use, in blocks: cached, being filled, or
// evicted but still waiting to be written to disk.
func (c *Cache) usedLocked() int {
	return c.lru.Len() + c.pinnedLocked()
}

// pinnedLocked is the memory in use that no eviction can free.
func (c *Cache) pinnedLocked() int {
	return len(c.inflight) + int(c.queuedOut.Load())
}

// evicted is the LRU's callback.
func (c *Cache) evicted(_ blockKey, b *block) {
	if old := b.disk.Or(blockEvicted); old&blockQueued != 0 {
		c.queuedOut.Add(1)
	}
	c.signalFreed()
}

// wholeBlock returns block idx of f with a hold, for the checksum: cached,
// in flight, or fetched now, on the cache's own deadline.
func (c *Cache) wholeBlock(f *File, idx int64) (*block, error) {
	ctx, cancel := context.WithTimeout(c.base, c.cfg.IOTimeout)
	defer cancel()
	return c.acquire(ctx, f, idx, true)
}

// dropFile removes every block of a file from memory and disk; disk
// writes already queued for it are discarded.
func (c *Cache) dropFile(f *File) {
	f.gen.Add(1)
	for idx := int64(0); idx < f.nblocks; idx++ {
		c.lru.Remove(blockKey{f.key, idx})
	}
	if c.cfg.Disk != nil {
		_ = c.cfg.Disk.DropFile(f.key)
	}
}
