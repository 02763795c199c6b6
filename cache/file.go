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
	"sync/atomic"
)

// ErrChecksum means a whole file was read and its digest differs from the
// checksum the API gave. Its cached blocks have been dropped.
var ErrChecksum = errors.New("file content does not match its checksum")

// pageSize is the granularity at which File tracks what readers were served.
const pageSize = 4096

// File is one immutable file served through the cache.
type File struct {
	c        *Cache
	key      FileKey
	src      Source
	size     int64
	nblocks  int64
	checksum string // lower-case hex digest from the API, "" for none

	gen     atomic.Uint64 // bumped when the file's blocks are dropped
	readers atomic.Int64  // open Readers
	// failed fails every read once a mismatch is found, until the file is
	// opened afresh with no other reader open: the kernel retries a failed
	// page, and must not get bad bytes the second time.
	failed atomic.Bool
	// trusted skips the checksum: a run before verified the blocks on
	// disk, which carry their own CRCs, and no block came from storage since.
	trusted    atomic.Bool
	verified   atomic.Bool // the digest matched in this mount
	diskMarked atomic.Bool // the disk cache holds a verified mark for the file

	checkMu sync.Mutex
	check   *checkRun // the completion of the digest under way, if any

	vmu      sync.Mutex
	vhash    hash.Hash   // running digest; nil when there is no usable checksum
	vnext    int64       // next block to feed the digest, in order
	vpending atomic.Bool // a fill found vmu taken: the holder must look again

	// Which pages readers were served: once every page was, the reader
	// that served the last one completes the digest and learns the verdict.
	cmu      sync.Mutex
	covered  []uint64 // bitmap of pages
	ncovered int64
}

// File returns a cached view of a file of the given exact size. checksum,
// when it is a hex MD5, SHA-1 or SHA-256, is checked once every byte of the
// file has been served to readers, in whatever order.
func (c *Cache) File(key FileKey, size int64, checksum string, src Source) *File {
	f := &File{c: c, key: key, src: src, size: size, checksum: strings.ToLower(strings.TrimSpace(checksum))}
	f.nblocks = (size + c.cfg.BlockSize - 1) / c.cfg.BlockSize
	f.vhash = newDigest(f.checksum)
	if f.vhash != nil {
		f.covered = make([]uint64, (f.pages()+63)/64)
		marked := c.cfg.Disk != nil && c.cfg.Disk.Verified(key, f.checksum)
		f.trusted.Store(marked)
		f.diskMarked.Store(marked)
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

func (f *File) pages() int64 { return (f.size + pageSize - 1) / pageSize }

func (f *File) blockLen(idx int64) int64 {
	return min(f.c.cfg.BlockSize, f.size-idx*f.c.cfg.BlockSize)
}

// NewReader returns a reader for one open of the file; it tracks the
// access pattern to prefetch ahead of sequential reads. Close it.
func (f *File) NewReader() *Reader {
	if f.readers.Add(1) == 1 {
		f.failed.Store(false) // a fresh attempt: the bad blocks are gone
	}
	return &Reader{f: f, next: -1, fetchedTo: -1, holds: make(map[int64]*fillState)}
}

// Reader reads a File for one open file handle.
type Reader struct {
	f *File

	mu        sync.Mutex
	next      int64                // offset where a sequential reader reads next; -1 before any read
	window    int                  // blocks to keep fetched ahead; 0 for random access
	fetchedTo int64                // last block prefetched in this sequential run; -1 for none
	holds     map[int64]*fillState // unfinished fills this reader wants: read from, or fetched ahead
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
	if f.failed.Load() {
		return 0, fmt.Errorf("%s: %w", f.key, ErrChecksum)
	}
	gen := f.gen.Load()
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
	if f.served(off, n, gen) {
		if err := f.awaitCheck(ctx); err != nil {
			return 0, err
		}
	}
	if f.failed.Load() {
		return 0, fmt.Errorf("%s: %w", f.key, ErrChecksum)
	}
	return n, nil
}

// Unsettled reports whether the file's bytes still await their checksum
// verdict, or failed it: the kernel should not keep its pages across opens.
func (f *File) Unsettled() bool { return f.verifying() || f.failed.Load() }

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
// cancels what nobody waits for. A finished fill needs no hold.
func (r *Reader) keep(idx int64, b *block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, dup := r.holds[idx]
	if r.closed || old == b.state || b.state.finished() {
		b.release()
		return
	}
	if dup {
		old.release() // a failed fill, replaced by a fresh one
	}
	r.holds[idx] = b.state
}

// pruneLocked lets go of fills that have finished.
func (r *Reader) pruneLocked() {
	for idx, s := range r.holds {
		if s.finished() {
			delete(r.holds, idx)
			s.release()
		}
	}
}

// Pause lets go of everything this reader fetched ahead, cancelling the
// fetches no read waits for, and restarts its access pattern. A process
// closing its descriptor (or dying: Ctrl-C on cp) pauses the reader long
// before the last read in flight allows it to be closed.
func (r *Reader) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.releaseLocked()
	r.next, r.window, r.fetchedTo = -1, 0, -1
}

// Close stops prefetching for this reader and cancels the fetches it
// started that no reader waits for.
func (r *Reader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.releaseLocked()
	r.f.readers.Add(-1)
}

func (r *Reader) releaseLocked() {
	for idx, s := range r.holds {
		delete(r.holds, idx)
		s.release()
	}
}

// needVerify notes that a block is coming from storage: whatever an
// earlier check verified, these bytes have not been, so the file is
// checked again from the start the next time it is served whole, and the
// disk's verified mark, which would cover them in the next mount, goes.
func (f *File) needVerify() {
	if f.vhash == nil {
		return
	}
	wasTrusted := f.trusted.Swap(false)
	wasVerified := false
	if f.verified.Load() {
		f.vmu.Lock()
		if wasVerified = f.verified.Swap(false); wasVerified {
			f.resetDigestLocked()
		}
		f.vmu.Unlock()
	}
	if (wasTrusted || wasVerified) && f.diskMarked.Swap(false) {
		_ = f.c.cfg.Disk.ClearVerified(f.key)
	}
}

// resetDigestLocked starts the digest and the served pages over; vmu held.
func (f *File) resetDigestLocked() {
	f.vhash.Reset()
	f.vnext = 0
	f.cmu.Lock()
	clear(f.covered)
	f.ncovered = 0
	f.cmu.Unlock()
}

// verifying reports whether the digest still has to be checked. vhash is
// set once at creation, so reading it here needs no lock.
func (f *File) verifying() bool { return f.vhash != nil && !f.trusted.Load() && !f.verified.Load() }

// served records that bytes [off, off+n) reached a reader, and reports
// whether every byte of the file has now been served. While that is so and
// the check has not concluded (a fetch for it failed), every read retries it.
func (f *File) served(off int64, n int, gen uint64) bool {
	if !f.verifying() || n <= 0 {
		return false // nothing to check: keep the read path free of the bitmap
	}
	f.cmu.Lock()
	defer f.cmu.Unlock()
	if f.gen.Load() != gen {
		return false // served from blocks dropped since: they do not count
	}
	if f.ncovered == f.pages() {
		return true
	}
	for pg := off / pageSize; pg <= (off+int64(n)-1)/pageSize; pg++ {
		if w, bit := pg/64, uint64(1)<<(pg%64); f.covered[w]&bit == 0 {
			f.covered[w] |= bit
			f.ncovered++
		}
	}
	return f.ncovered == f.pages()
}

// feedDigest hashes blocks in order as they complete: the next block the
// digest needs, then any later ones already cached. It runs in fills so
// that most of the hashing is done before a reader asks for the verdict.
// A fill never waits for another: if the digest is busy it leaves a note,
// and the busy one looks again before it leaves, so no block is skipped.
func (f *File) feedDigest() {
	if !f.verifying() {
		return
	}
	for {
		f.vpending.Store(true) // before TryLock: see the loop's end
		if !f.vmu.TryLock() {
			return
		}
		f.vpending.Store(false)
		for f.vnext < f.nblocks {
			b, ok := f.c.lru.Peek(blockKey{f.key, f.vnext})
			if !ok || !b.complete() {
				break
			}
			f.vhash.Write(b.data)
			f.vnext++
		}
		f.vmu.Unlock()
		if !f.vpending.Load() {
			return // nobody came by while we held it
		}
	}
}

// checkRun is one completion of the digest; readers wait for its verdict.
type checkRun struct {
	done chan struct{}
	err  error
}

// awaitCheck waits for the digest's verdict, starting its completion if
// none is under way. The completion runs on its own, with a deadline per
// block rather than the reader's, so a reader giving up (or a slow
// refetch of evicted blocks) never turns a correct file into an error.
func (f *File) awaitCheck(ctx context.Context) error {
	if !f.verifying() {
		return nil
	}
	f.checkMu.Lock()
	run := f.check
	if run == nil {
		run = &checkRun{done: make(chan struct{})}
		f.check = run
		go func() {
			run.err = f.completeDigest()
			f.checkMu.Lock()
			f.check = nil
			f.checkMu.Unlock()
			close(run.done)
		}()
	}
	f.checkMu.Unlock()
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// completeDigest hashes every block the fills did not, in order, fetching
// a few ahead, and compares the digest with the API's checksum. A
// mismatch drops the file's blocks, fails its reads, and is returned.
func (f *File) completeDigest() error {
	f.vmu.Lock()
	defer func() {
		f.vmu.Unlock()
		if f.vpending.Load() {
			f.feedDigest() // a fill finished while we held the digest
		}
	}()
	if !f.verifying() {
		return nil
	}
	const ahead = 4
	held := map[int64]*block{}
	defer func() {
		for _, b := range held {
			b.release()
		}
	}()
	for f.vnext < f.nblocks {
		for idx := f.vnext; idx < min(f.vnext+ahead, f.nblocks); idx++ {
			if held[idx] == nil {
				b, err := f.c.wholeBlock(f, idx)
				if err != nil {
					return err
				}
				held[idx] = b
			}
		}
		b := held[f.vnext]
		ctx, cancel := context.WithTimeout(f.c.base, f.c.cfg.IOTimeout)
		err := b.waitFor(ctx, len(b.data))
		cancel()
		if err != nil && errors.Is(err, context.Canceled) && f.c.base.Err() == nil {
			// Cancelled by a reader letting go just as we joined: fetch anew.
			b.release()
			delete(held, f.vnext)
			continue
		}
		if err != nil {
			return err
		}
		f.vhash.Write(b.data)
		b.release()
		delete(held, f.vnext)
		f.vnext++
	}
	got := hex.EncodeToString(f.vhash.Sum(nil))
	if got == f.checksum {
		f.verified.Store(true)
		f.c.stats.verified.Add(1)
		if d := f.c.cfg.Disk; d != nil && d.SetVerified(f.key, f.checksum) == nil {
			f.diskMarked.Store(true)
		}
		return nil
	}
	f.c.stats.mismatches.Add(1)
	f.failed.Store(true)
	f.c.dropFile(f)
	f.resetDigestLocked() // the next complete read is checked from scratch
	return fmt.Errorf("%s: digest %s, API checksum %s: %w", f.key, got, f.checksum, ErrChecksum)
}
