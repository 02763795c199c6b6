package cache

import (
	"context"
	"sync"
	"sync/atomic"
)

// File is one immutable file served through the cache.
type File struct {
	c         *Cache
	key       FileKey
	src       Source
	size      int64
	blockSize int64
	nblocks   int64
	check     *verifier    // nil when the API gave no usable checksum
	readers   atomic.Int64 // open Readers
	fetched   atomic.Int64 // bytes fetched from the source for this file

	onceMu      sync.Mutex
	fetchedOnce []uint64 // bitmap of blocks fetched from the source in this mount
}

// File returns a cached view of a file of the given exact size. checksum,
// when it is a hex MD5, SHA-1 or SHA-256, is checked once every byte of the
// file has been served to readers, in whatever order.
func (c *Cache) File(key FileKey, size int64, checksum string, src Source) *File {
	bs := c.cfg.BlockSize
	f := &File{c: c, key: key, src: src, size: size, blockSize: bs, nblocks: (size + bs - 1) / bs}
	sum := normalChecksum(checksum)
	if h := newDigest(sum); h != nil {
		f.check = &verifier{key: key, checksum: sum, size: size, nblocks: f.nblocks, hash: h,
			blocks: f, base: c.base, ioTimeout: c.cfg.IOTimeout, ahead: max(2, c.mem.slots/4), verdict: f.verdict}
		if c.store != nil {
			f.check.marks = c.store
		}
		f.check.start()
	}
	return f
}

// Size is the file's exact size.
func (f *File) Size() int64 { return f.size }

// Fetched is how many of the file's bytes came from the source so far.
func (f *File) Fetched() int64 { return f.fetched.Load() }

// Unsettled reports whether the file's bytes still await their checksum
// verdict, or failed it: the kernel should not keep its pages across opens.
func (f *File) Unsettled() bool { return f.check != nil && f.check.unsettled() }

// NewReader returns a reader for one open of the file; it tracks the
// access pattern to prefetch ahead of sequential reads. Close it.
func (f *File) NewReader() *Reader {
	if f.readers.Add(1) == 1 && f.check != nil {
		f.check.reopen()
	}
	return &Reader{f: f, next: -1, fetchedTo: -1, holds: make(map[int64]*fillState)}
}

// fetchedBefore notes that block idx came from the source and reports
// whether it had already: a refetch, the cost of an eviction too early.
func (f *File) fetchedBefore(idx int64) bool {
	f.onceMu.Lock()
	defer f.onceMu.Unlock()
	if f.fetchedOnce == nil {
		f.fetchedOnce = make([]uint64, (f.nblocks+63)/64)
	}
	w, bit := idx/64, uint64(1)<<(idx%64)
	before := f.fetchedOnce[w]&bit != 0
	f.fetchedOnce[w] |= bit
	return before
}

func (f *File) blockLen(idx int64) int64 { return min(f.blockSize, f.size-idx*f.blockSize) }

// epoch counts the drops of the file's blocks; blocks of an older epoch
// are not kept. Only a checksum mismatch drops them.
func (f *File) epoch() uint64 {
	if f.check == nil {
		return 0
	}
	return f.check.epoch.Load()
}

// failure is the error every read returns while the file failed its check.
func (f *File) failure() error {
	if f.check == nil {
		return nil
	}
	return f.check.err()
}

// fromSource and blockCached tell the verifier what the fills do.
func (f *File) fromSource() {
	if f.check != nil {
		f.check.fromSource()
	}
}

func (f *File) blockCached() {
	if f.check != nil {
		f.check.blockCached()
	}
}

// served records bytes that reached a reader and, once the whole file
// has, waits for the checksum's verdict.
func (f *File) served(ctx context.Context, off int64, n int, epoch uint64) error {
	if f.check == nil || !f.check.served(off, n, epoch) {
		return nil
	}
	return f.check.await(ctx)
}

// verdict counts a checksum verdict; a mismatch drops the file's blocks.
func (f *File) verdict(ok bool) {
	if ok {
		f.c.stats.verified.Add(1)
		return
	}
	f.c.stats.mismatches.Add(1)
	f.c.dropFile(f)
}

// peek and hold are the verifier's blockSource.
func (f *File) peek(idx int64) (*block, bool) { return f.c.peek(blockKey{f.key, idx}) }

func (f *File) hold(ctx context.Context, idx int64) (*block, error) {
	return f.c.acquire(ctx, f, idx, true)
}
