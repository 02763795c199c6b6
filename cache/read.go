package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Reader reads a File for one open file handle.
type Reader struct {
	f *File

	mu        sync.Mutex
	next      int64                // offset where a sequential reader reads next; -1 before any read
	window    int                  // blocks to keep fetched ahead; 0 for random access
	fetchedTo int64                // last block prefetched in this sequential run; -1 for none
	run       int                  // counts sequential runs, so that openWindow knows its own
	opening   bool                 // the run started at offset 0 waits for its first bytes (openWindow)
	holds     map[int64]*fillState // unfinished fills this reader wants: read from, or fetched ahead
	closed    bool
}

// ReadAt reads into p at off, waiting only for the bytes it returns, and
// for each block at most the cache's IOTimeout. ctx ends it early: an
// interrupted reader.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	want, epoch, err := r.begin(ctx, off, len(p))
	if err != nil {
		return 0, err
	}
	p = p[:want]
	f := r.f
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := pos / f.blockSize
		inBlock := int(pos - idx*f.blockSize)
		b, err := r.blockFor(ctx, idx, inBlock+min(len(p)-n, int(f.blockLen(idx))-inBlock))
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b.data[inBlock:])
		b.unref()
	}
	if err := r.end(ctx, off, n, epoch); err != nil {
		return 0, err
	}
	return n, nil
}

// Lent is bytes of a cached block lent without a copy. They must not be
// written, and Release must be called once they are no longer used.
type Lent struct {
	Data []byte
	b    *block
}

// Release gives the bytes back; they must not be used after.
func (l *Lent) Release() {
	if l.b != nil {
		l.b.unref()
		l.b = nil
	}
}

// Lend is ReadAt without the copy: the bytes at off, up to n, as they lie
// in the cached block. ok is false, and nothing done, when they lie in
// more than one block; ReadAt reads those.
func (r *Reader) Lend(ctx context.Context, off int64, n int) (l Lent, ok bool, err error) {
	f := r.f
	idx := off / f.blockSize
	inBlock := int(off - idx*f.blockSize)
	if off < f.size && inBlock+int(min(int64(n), f.size-off)) > int(f.blockLen(idx)) {
		return Lent{}, false, nil
	}
	n, epoch, err := r.begin(ctx, off, n)
	if err != nil {
		return Lent{}, true, err
	}
	b, err := r.blockFor(ctx, idx, inBlock+n)
	if err != nil {
		return Lent{}, true, err
	}
	if err := r.end(ctx, off, n, epoch); err != nil {
		b.unref()
		return Lent{}, true, err
	}
	return Lent{Data: b.data[inBlock : inBlock+n], b: b}, true, nil
}

// begin starts a read of n bytes at off: it cuts n to the file, refuses a
// file found wrong, and prefetches. It returns the bytes to read and the
// file's epoch, for end.
func (r *Reader) begin(ctx context.Context, off int64, n int) (int, uint64, error) {
	f := r.f
	if off >= f.size {
		return 0, 0, io.EOF
	}
	n = int(min(int64(n), f.size-off))
	if err := f.failure(); err != nil {
		return 0, 0, err
	}
	epoch := f.epoch()
	r.prefetch(ctx, off, n)
	return n, epoch, nil
}

// end accounts for n bytes read at off and, when they complete the file,
// waits for the checksum's verdict on it: bytes of a file found wrong
// while they were read are wrong too.
func (r *Reader) end(ctx context.Context, off int64, n int, epoch uint64) error {
	f := r.f
	f.c.stats.servedBytes.Add(int64(n))
	if err := f.served(ctx, off, n, epoch); err != nil {
		return err
	}
	return f.failure()
}

// blockFor returns block idx once its first upTo bytes are final, with a
// reference on its memory the caller unrefs. Each block gets --io-timeout;
// the checksum's verdict (end) does not: its own fetches have deadlines of
// their own, and while it makes progress, giving up on it would fail
// correct bytes.
func (r *Reader) blockFor(ctx context.Context, idx int64, upTo int) (*block, error) {
	ctx, cancel := context.WithTimeout(ctx, r.f.c.cfg.IOTimeout)
	defer cancel()
	for try := 0; ; try++ {
		b, err := r.f.c.acquire(ctx, r.f, idx, true)
		if err != nil {
			return nil, err
		}
		err = b.waitFor(ctx, upTo)
		if err == nil {
			b.markRead()
		}
		// The reader keeps its hold: it will likely read the rest of the
		// block, and the fill must go on until it does or closes the file.
		r.keep(idx, b)
		if err == nil {
			return b, nil
		}
		b.unref()
		if ctx.Err() == nil && errors.Is(err, context.Canceled) && try < 3 {
			continue // the fill was cancelled by a reader that let go of it just as we joined
		}
		return nil, err
	}
}

// prefetch updates the access pattern and starts fetches ahead of a
// sequential reader. A jump resets the window; the window doubles with
// every block a sequential reader enters, up to MaxAhead. A first read at
// offset 0 is how copies start: its block is fetched, and the window opens
// at StartWindow as soon as that block's first bytes arrive (openWindow),
// so that the first byte has the link to itself and the rest of the copy
// no ramp to climb. Any other first read prefetches nothing.
func (r *Reader) prefetch(ctx context.Context, off int64, n int) {
	f := r.f
	bs := f.blockSize
	r.mu.Lock()
	r.pruneLocked()
	if r.closed || f.c.cfg.MaxAhead == 0 {
		r.mu.Unlock()
		return
	}
	// The kernel's readahead sends several READs at once, so a sequential
	// stream arrives slightly out of order: allow some slack.
	slack := 2 * bs
	end := off + int64(n)
	switch {
	case r.next < 0 && off == 0 && f.c.cfg.StartWindow > 0:
		r.restartLocked(end)
		r.opening = true
		run := r.run
		r.mu.Unlock()
		b, err := f.c.acquire(ctx, f, 0, false)
		if err != nil {
			r.mu.Lock()
			r.opening = false // no room: grow as any run does
			r.mu.Unlock()
			return
		}
		r.keep(0, b)
		go r.openWindow(b, run)
		return
	case r.next < 0 || off < r.next-slack || off > r.next+slack:
		r.restartLocked(end)
		r.mu.Unlock()
		return
	case r.opening: // openWindow opens it
	case end/bs > r.next/bs || r.window == 0:
		if w := min(max(2*r.window, 2), f.c.cfg.MaxAhead); w != r.window {
			r.window = w
			f.c.log.Debug("prefetch window", "build", f.key.Build, "type", f.key.Type, "blocks", w, "offset", off)
		}
	}
	r.next = max(r.next, end)
	cur := (end - 1) / bs // last block this read touches; the read itself fetches it
	first, last := max(cur+1, r.fetchedTo+1), min(cur+int64(r.window), f.nblocks-1)
	r.mu.Unlock()
	r.fetchAhead(ctx, first, last)
}

// restartLocked starts a new run: no window, nothing fetched ahead.
func (r *Reader) restartLocked(next int64) {
	r.window, r.fetchedTo, r.opening = 0, -1, false
	r.next = next
	r.run++
}

// openWindow opens the window of a run that started at offset 0 once the
// first bytes of block 0 arrived (or its fill ended), unless the run is
// over by then.
func (r *Reader) openWindow(b0 *block, run int) {
	f := r.f
	ctx, cancel := context.WithTimeout(f.c.base, f.c.cfg.IOTimeout)
	defer cancel()
	_ = b0.waitFor(ctx, 1) // a failed block 0 fails its reader, not the window
	r.mu.Lock()
	if r.closed || r.run != run || !r.opening {
		r.mu.Unlock()
		return
	}
	r.opening = false
	r.window = f.c.cfg.StartWindow
	f.c.log.Debug("prefetch window", "build", f.key.Build, "type", f.key.Type, "blocks", r.window, "offset", 0)
	cur := (r.next - 1) / f.blockSize
	first, last := max(cur+1, r.fetchedTo+1), min(cur+int64(r.window), f.nblocks-1)
	r.mu.Unlock()
	r.fetchAhead(ctx, first, last)
}

// fetchAhead starts fetching blocks first to last, in order, until the
// budget or the fetch slots run out: the next read tries again.
func (r *Reader) fetchAhead(ctx context.Context, first, last int64) {
	for idx := first; idx <= last; idx++ {
		b, err := r.f.c.acquire(ctx, r.f, idx, false)
		if err != nil {
			return
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
	r.restartLocked(-1)
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

// acquire returns block idx of f, cached or in flight, or starts filling
// it, with a hold the caller must release: a lookup, a reservation of
// memory, a fill. A demand read may wait for memory; a prefetch never does.
// A demand read also gets a reference on the block's memory, to unref once
// it no longer reads the block's bytes; a prefetch reads none.
func (c *Cache) acquire(ctx context.Context, f *File, idx int64, demand bool) (*block, error) {
	key := blockKey{f.key, idx}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if b, ok := c.lookup(key, demand); ok {
			return b, nil
		}
		if !demand && c.prefetchesFull() {
			return nil, errNoRoom
		}
		if err := c.reserve(ctx, demand); err != nil {
			return nil, err
		}
		if b, err := c.startFill(f, key, demand); b != nil || err != nil {
			return b, err
		}
		// Cached by another reader while we reserved: look again.
	}
}

// lookup joins a block that is cached or being filled, with a reference
// on its memory for a demand read.
func (c *Cache) lookup(key blockKey, demand bool) (*block, bool) {
	if b, ok := c.lru.Get(key); ok && join(b, demand) {
		c.stats.memHits.Add(1)
		return b, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A fill that failed is still in flight for a moment after it
	// finished: it is no block to join, but one to fill afresh.
	if b, ok := c.inflight[key]; ok && !b.failed() && join(b, demand) {
		return b, true
	}
	return nil, false
}

// join takes a hold on b's fill and, for a demand read, a reference on its
// memory; it fails, taking neither, if the fill was cancelled or the
// memory let go (evicted as we found it).
func join(b *block, demand bool) bool {
	if demand && !b.ref() {
		return false
	}
	if b.state.join() {
		return true
	}
	if demand {
		b.unref()
	}
	return false
}

func (c *Cache) prefetchesFull() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prefetching >= c.cfg.MaxFetches
}

// startFill starts filling a block in the memory slot the caller reserved.
// Should another reader have started or cached it meanwhile, the slot goes
// back, and the caller gets that fill or (nil, nil) to look again.
func (c *Cache) startFill(f *File, key blockKey, demand bool) (*block, error) {
	c.mu.Lock()
	var err error
	switch b, ok := c.inflight[key]; {
	case ok && !b.failed() && join(b, demand):
		c.mu.Unlock()
		c.mem.unreserve(demand)
		return b, nil
	case c.lru.Contains(key):
	case c.base.Err() != nil:
		err = errors.New("cache closed")
	case !demand && c.prefetching >= c.cfg.MaxFetches:
		err = errNoRoom
	default:
		b := newBlock(f.blockLen(key.idx), f.epoch(), c.mem)
		b.prefetched = !demand
		b.ahead.Store(!demand)
		if demand {
			b.refs.Add(1) // the reader's, beside the fill's
		}
		c.stats.memMisses.Add(1)
		fctx, cancel := context.WithTimeout(c.base, c.cfg.IOTimeout)
		b.state.cancel = cancel
		c.inflight[key] = b
		if !demand {
			c.prefetching++
			c.stats.prefetches.Add(1)
		}
		c.fills.Add(1)
		c.mu.Unlock()
		go c.fill(fctx, f, key, b, !demand)
		return b, nil
	}
	c.mu.Unlock()
	c.mem.unreserve(demand)
	return nil, err
}

// fill loads a block from the store or the source. It runs detached from
// any reader: a reader that gives up must not fail the others waiting.
func (c *Cache) fill(ctx context.Context, f *File, key blockKey, b *block, prefetch bool) {
	defer c.fills.Done()
	defer b.state.cancel()
	var err error
	fromStore := c.store != nil && c.store.ReadBlock(key.file, f.blockSize, key.idx, b.data)
	if fromStore {
		c.stats.diskHits.Add(1)
	} else {
		if c.store != nil {
			c.stats.diskMisses.Add(1)
		}
		f.fromSource() // before the first byte can reach a reader
		var n int
		n, err = f.src.ReadAtProgress(ctx, b.data, key.idx*f.blockSize, b.progress)
		if err == nil && n < len(b.data) {
			err = fmt.Errorf("source ended at %d of %d bytes", n, len(b.data))
		}
		if err != nil {
			err = fmt.Errorf("fetch block %d of %s: %w", key.idx, key.file, err)
		} else {
			c.stats.fetches.Add(1)
			c.stats.fetchedBytes.Add(int64(n))
			f.fetched.Add(int64(n))
			if f.fetchedBefore(key.idx) {
				c.stats.refetches.Add(1)
			}
		}
	}
	// Bytes fetched before the file was dropped (a checksum mismatch) are
	// served to the readers that waited for them, but not kept.
	keep := err == nil && b.epoch == f.epoch()
	queue := keep && !fromStore && c.writes != nil
	// Done before it is cached: a block in the LRU must be joinable, and a
	// hold let go from now on cancels nothing.
	b.finish(err)
	// From in flight to cached in one step, holding the memory throughout.
	c.mu.Lock()
	if keep {
		b.refs.Add(1) // before the LRU can evict it
		if found, _ := c.lru.ContainsOrAdd(key, b); found {
			b.refs.Add(-1) // cannot reach 0: the fill still holds it
		}
	}
	if queue {
		b.refs.Add(1)
	}
	if c.inflight[key] == b {
		delete(c.inflight, key)
	}
	if prefetch {
		c.prefetching--
	}
	c.mu.Unlock()
	b.unref() // the fill's own hold
	if !keep {
		return
	}
	f.blockCached()
	if queue {
		c.writes <- storeWrite{key: key, block: b, file: f}
	}
}
