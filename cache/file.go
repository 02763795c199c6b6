package cache

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
)

// ErrChecksum means a whole file was read and its digest differs from the
// checksum the API gave. Its cached blocks have been dropped.
var ErrChecksum = errors.New("file content does not match its checksum")

// File is one immutable file served through the cache.
type File struct {
	c        *Cache
	key      FileKey
	src      Source
	size     int64
	nblocks  int64
	checksum string // lower-case hex digest from the API, "" for none

	vmu   sync.Mutex
	vnext int64     // next block to feed the digest, in order
	vhash hash.Hash // nil: nothing to verify, or already verified
	// vfailed fails every read until the file is opened again: the kernel
	// retries a failed page, and must not get the bad bytes the second time.
	vfailed bool
}

// File returns a cached view of a file of the given exact size. checksum,
// when it is a hex MD5, SHA-1 or SHA-256, is checked once the whole file has
// been read in order.
func (c *Cache) File(key FileKey, size int64, checksum string, src Source) *File {
	f := &File{c: c, key: key, src: src, size: size, checksum: strings.ToLower(strings.TrimSpace(checksum))}
	f.nblocks = (size + c.cfg.BlockSize - 1) / c.cfg.BlockSize
	f.vhash = newDigest(f.checksum)
	if f.vhash != nil && c.cfg.Disk != nil && c.cfg.Disk.Verified(key, f.checksum) {
		f.vhash = nil // checked on an earlier run; the blocks on disk carry their own CRCs
	}
	return f
}

func newDigest(sum string) hash.Hash {
	if _, err := hex.DecodeString(sum); err != nil {
		return nil
	}
	switch len(sum) {
	case 32:
		return md5.New()
	case 40:
		return sha1.New()
	case 64:
		return sha256.New()
	}
	return nil
}

// Size is the file's exact size.
func (f *File) Size() int64 { return f.size }

func (f *File) blockLen(idx int64) int64 {
	return min(f.c.cfg.BlockSize, f.size-idx*f.c.cfg.BlockSize)
}

// NewReader returns a reader for one open of the file; it tracks the
// access pattern to prefetch ahead of sequential reads.
func (f *File) NewReader() *Reader {
	f.vmu.Lock()
	f.vfailed = false
	f.vmu.Unlock()
	return &Reader{f: f, next: -1, fetchedTo: -1, holds: make(map[int64]*block)}
}

// Reader reads a File for one open file handle.
type Reader struct {
	f *File

	mu        sync.Mutex
	next      int64            // offset where a sequential reader reads next; -1 before any read
	window    int              // blocks to keep fetched ahead; 0 for random access
	fetchedTo int64            // last block prefetched in this sequential run; -1 for none
	holds     map[int64]*block // unfinished fills this reader wants: read from, or fetched ahead
	closed    bool
}

// ReadAt reads into p at off, waiting only for the bytes it returns.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	f := r.f
	if off >= f.size {
		return 0, io.EOF
	}
	if rest := f.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	if f.failed() {
		return 0, fmt.Errorf("%s: %w", f.key, ErrChecksum)
	}
	bs := f.c.cfg.BlockSize
	r.prefetch(ctx, off, len(p))
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := pos / bs
		m, err := r.readBlock(ctx, idx, p[n:], int(pos-idx*bs))
		n += m
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readBlock copies from block idx, at inBlock, as much of p as it holds.
func (r *Reader) readBlock(ctx context.Context, idx int64, p []byte, inBlock int) (int, error) {
	f := r.f
	for try := 0; ; try++ {
		b, err := f.c.acquire(ctx, f, idx, true)
		if err != nil {
			return 0, err
		}
		want := min(len(p), len(b.data)-inBlock)
		err = b.waitFor(ctx, inBlock+want)
		n := 0
		if err == nil {
			n = copy(p[:want], b.data[inBlock:inBlock+want])
			// Fills feed the digest in the background; the read of the last
			// block completes it, so the failure reaches a reader.
			if idx == f.nblocks-1 {
				err = f.verify(idx, b)
			}
			if err == nil && f.failed() {
				err = fmt.Errorf("%s: %w", f.key, ErrChecksum)
			}
		}
		// The reader keeps its hold: it will likely read the rest of the
		// block, and the fill must go on until it does or closes the file.
		r.keep(idx, b)
		if err != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) && try < 3 {
			continue // the fill was cancelled by a reader that let go of it just as we joined
		}
		return n, err
	}
}

// prefetch updates the access pattern and starts fetches ahead of a
// sequential reader. A jump resets the window; the window doubles with
// every block a sequential reader enters, up to MaxAhead. The first read
// of a file prefetches nothing, so the first byte has the link to itself.
func (r *Reader) prefetch(ctx context.Context, off int64, n int) {
	f := r.f
	bs := f.c.cfg.BlockSize
	r.mu.Lock()
	r.pruneLocked()
	if r.closed {
		r.mu.Unlock()
		return
	}
	// The kernel's readahead sends several READs at once, so a sequential
	// stream arrives slightly out of order: allow some slack.
	slack := 2 * bs
	end := off + int64(n)
	if r.next < 0 || off < r.next-slack || off > r.next+slack {
		r.window, r.fetchedTo = 0, -1
		r.next = end
		r.mu.Unlock()
		return
	}
	if end/bs > r.next/bs || r.window == 0 {
		r.window = min(max(2*r.window, 2), f.c.cfg.MaxAhead)
	}
	r.next = max(r.next, end)
	cur := (end - 1) / bs // last block this read touches; the read itself fetches it
	first, last := max(cur+1, r.fetchedTo+1), min(cur+int64(r.window), f.nblocks-1)
	r.mu.Unlock()
	for idx := first; idx <= last; idx++ {
		b, err := f.c.acquire(ctx, f, idx, false)
		if err != nil {
			return // budget or fetch slots taken: the next read tries again
		}
		r.keep(idx, b)
		r.mu.Lock()
		r.fetchedTo = max(r.fetchedTo, idx)
		r.mu.Unlock()
	}
}

// keep holds an unfinished fill until the reader closes, so that closing
// cancels what nobody waits for. A finished block needs no hold: holding
// it would keep its memory reachable past the cache's budget.
func (r *Reader) keep(idx int64, b *block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, dup := r.holds[idx]
	if r.closed || old == b || b.complete() {
		b.release()
		return
	}
	if dup {
		old.release() // a failed fill, replaced by a fresh one
	}
	r.holds[idx] = b
}

// pruneLocked lets go of fills that have finished.
func (r *Reader) pruneLocked() {
	for idx, b := range r.holds {
		if b.finished() {
			delete(r.holds, idx)
			b.release()
		}
	}
}

// Close stops prefetching for this reader and cancels the fetches it
// started that no reader waits for.
func (r *Reader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for idx, b := range r.holds {
		delete(r.holds, idx)
		b.release()
	}
}

func (f *File) failed() bool {
	f.vmu.Lock()
	defer f.vmu.Unlock()
	return f.vfailed
}

// verify feeds complete blocks, in order, to the file's digest, and checks
// it when the last block is in. A mismatch drops the file's cached blocks.
// It catches up on earlier blocks that are still cached, since concurrent
// reads finish blocks out of order.
func (f *File) verify(idx int64, b *block) error {
	f.vmu.Lock()
	defer f.vmu.Unlock()
	if f.vhash == nil || idx < f.vnext {
		return nil
	}
	for f.vnext < f.nblocks {
		next := b
		if f.vnext != idx {
			var ok bool
			if next, ok = f.c.lru.Peek(blockKey{f.key, f.vnext}); !ok {
				return nil
			}
		}
		next.mu.Lock()
		complete := next.filled == len(next.data)
		next.mu.Unlock()
		if !complete {
			return nil // still arriving; a later read feeds it
		}
		f.vhash.Write(next.data)
		f.vnext++
	}
	return f.finishVerify()
}

func (f *File) finishVerify() error {
	got := hex.EncodeToString(f.vhash.Sum(nil))
	if got == f.checksum {
		f.vhash = nil
		f.c.stats.verified.Add(1)
		if d := f.c.cfg.Disk; d != nil {
			_ = d.SetVerified(f.key, f.checksum)
		}
		return nil
	}
	f.c.stats.mismatches.Add(1)
	f.vfailed = true
	f.c.dropFile(f)
	f.vhash.Reset()
	f.vnext = 0
	return fmt.Errorf("%s: digest %s, API checksum %s: %w", f.key, got, f.checksum, ErrChecksum)
}
