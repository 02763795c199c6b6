// Package cache keeps the bytes of immutable build files: an in-memory LRU
// of fixed-size blocks under one memory budget, shared by every open file,
// in front of an optional persistent Store (package cache/disk), with a
// sequential prefetcher per reader and whole-file checksum verification.
//
// A read goes Reader.ReadAt -> Cache.acquire -> Cache.fill -> Source, all
// in read.go; the budget (budget.go) and the verifier (verify.go) are what
// those steps consult.
package cache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/appliveryfs/appliveryfs/cache/disk"
)

// FileKey names one downloadable file of one build. Builds are immutable,
// so the key names the same bytes forever.
type FileKey = disk.Key

// Source is where a file's bytes come from when no cache has them.
// ReadAtProgress fills p from off, calling progress with the count of
// leading bytes of p that are final as they arrive.
type Source interface {
	ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(done int)) (int, error)
}

// Store is a persistent tier below memory, shared with other mounts:
// blocks, and marks saying which files' stored blocks were verified.
// *disk.Cache implements it.
type Store interface {
	// ReadBlock fills dst with a stored block of exactly len(dst) bytes,
	// reporting whether it could.
	ReadBlock(key FileKey, blockSize, idx int64, dst []byte) bool
	WriteBlock(key FileKey, blockSize, idx int64, data []byte) error
	// DropFile removes a file's blocks and its verified mark.
	DropFile(key FileKey) error
	marks
}

// Config sizes a Cache.
type Config struct {
	BlockSize   int64         // bytes per block; default 4 MiB
	MemoryBytes int64         // budget for cached, in-flight and queued-for-disk blocks; default 256 MiB
	Store       Store         // persistent cache; nil for none
	IOTimeout   time.Duration // bound on fetching one block; default 60 s
	MaxAhead    int           // prefetch window cap, in blocks; 0 turns prefetch off; at most half the budget
	StartWindow int           // prefetch window of a file's first read at offset 0; 0 waits for a second read
	MaxFetches  int           // storage requests in flight for prefetch, all files; default 32
	Logger      *slog.Logger  // prefetch window changes at debug level; nil for none
	// FreshBuffers allocates every block's memory anew instead of reusing
	// the buffers of evicted blocks: a tuning lever to measure against.
	FreshBuffers bool
}

// Stats counts what the cache did; for logs, tests and the benchmark.
type Stats struct {
	MemHits        int64 // block reads served from memory
	MemMisses      int64 // blocks not in memory: a fill started
	DiskHits       int64 // blocks loaded from the disk cache
	DiskMisses     int64 // blocks the disk cache did not have (with a disk cache)
	Fetches        int64 // blocks fetched from the source
	Refetches      int64 // ... that had been fetched before in this cache: evicted, then wanted again
	FetchedBytes   int64
	ServedBytes    int64 // bytes returned to readers
	Prefetches     int64 // fetches started ahead of the reader
	PrefetchWasted int64 // prefetched blocks evicted before any reader read them
	Verified       int64 // whole files checked against their checksum
	Mismatches     int64 // ... and found wrong
	MemoryBlocks   int   // blocks holding memory now: cached, in flight, queued for disk
	MemorySlots    int   // blocks the budget holds
}

// Cache is safe for concurrent use.
type Cache struct {
	cfg   Config
	mem   *budget
	lru   *lru.Cache[blockKey, *block]
	store Store // nil for none

	mu          sync.Mutex
	inflight    map[blockKey]*block
	prefetching int // prefetch fills in flight

	stats struct {
		memHits, memMisses, diskHits, diskMisses, fetches, refetches, fetchedBytes, servedBytes,
		prefetches, prefetchWasted, verified, mismatches atomic.Int64
	}
	log *slog.Logger

	writes    chan storeWrite // blocks to persist; nil without a store
	writers   sync.WaitGroup
	base      context.Context // parent of every fill; Close cancels it
	stop      context.CancelFunc
	fills     sync.WaitGroup
	closeOnce sync.Once
}

type storeWrite struct {
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
	if cfg.MaxAhead < 0 {
		return nil, fmt.Errorf("prefetch window %d: must not be negative", cfg.MaxAhead)
	}
	if cfg.StartWindow < 0 {
		return nil, fmt.Errorf("start window %d: must not be negative", cfg.StartWindow)
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
	cfg.StartWindow = min(cfg.StartWindow, cfg.MaxAhead)
	base, stop := context.WithCancel(context.Background())
	c := &Cache{
		cfg:      cfg,
		mem:      newBudget(slots, cfg.BlockSize, cfg.FreshBuffers),
		store:    cfg.Store,
		inflight: make(map[blockKey]*block),
		base:     base,
		stop:     stop,
	}
	// The budget, not the LRU's size, bounds what is cached: every cached
	// block holds a slot, so the LRU never reaches its own limit.
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	l, err := lru.NewWithEvict[blockKey, *block](slots, c.evicted)
	if err != nil {
		return nil, err
	}
	c.lru = l
	if c.store != nil {
		// A queued block keeps its memory slot, so a disk slower than the
		// network slows fetching instead of growing memory.
		c.writes = make(chan storeWrite, 8)
		for range 2 {
			c.writers.Add(1)
			go c.writeStore()
		}
	}
	return c, nil
}

// Close cancels fetches still running and waits for queued disk writes.
// The cache must not be used after.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.stop() // under mu: startFill checks base before adding a fill
		c.mu.Unlock()
		c.fills.Wait()
		if c.writes != nil {
			close(c.writes)
		}
		c.writers.Wait()
	})
}

// Stats returns counters since New.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		MemHits: s.memHits.Load(), MemMisses: s.memMisses.Load(),
		DiskHits: s.diskHits.Load(), DiskMisses: s.diskMisses.Load(),
		Fetches: s.fetches.Load(), Refetches: s.refetches.Load(), FetchedBytes: s.fetchedBytes.Load(),
		ServedBytes: s.servedBytes.Load(),
		Prefetches:  s.prefetches.Load(), PrefetchWasted: s.prefetchWasted.Load(),
		Verified: s.verified.Load(), Mismatches: s.mismatches.Load(),
		MemoryBlocks: c.mem.inUse(), MemorySlots: c.mem.slots,
	}
}

// evicted is the LRU's callback: the block lets go of its memory, and a
// prefetch nobody read was work for nothing.
func (c *Cache) evicted(_ blockKey, b *block) {
	if b.settle(aheadEvicted) {
		c.stats.prefetchWasted.Add(1)
	}
	b.unref()
}

func (c *Cache) writeStore() {
	defer c.writers.Done()
	for w := range c.writes {
		// A write from before a drop (a checksum mismatch) is stale.
		if w.file.epoch() == w.block.epoch {
			// A failed write (disk full) only costs a refetch later.
			_ = c.store.WriteBlock(w.key.file, c.cfg.BlockSize, w.key.idx, w.block.data)
		}
		w.block.unref()
	}
}

// peek returns a complete cached block without fetching or counting a
// hit, with a reference on its memory the caller must unref.
func (c *Cache) peek(key blockKey) (*block, bool) {
	b, ok := c.lru.Peek(key)
	if !ok || !b.ref() {
		return nil, false
	}
	if !b.complete() {
		b.unref()
		return nil, false
	}
	return b, true
}

// dropFile removes every block of a file from memory and the store. The
// file's epoch was bumped before, so fills and disk writes under way for
// it keep nothing.
func (c *Cache) dropFile(f *File) {
	for idx := int64(0); idx < f.nblocks; idx++ {
		c.lru.Remove(blockKey{f.key, idx})
	}
	if c.store != nil {
		_ = c.store.DropFile(f.key)
	}
}
