package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// blockKey names one block of one file.
type blockKey struct {
	file FileKey
	idx  int64
}

// block is one block of a file, complete or being filled.
type block struct {
	data  []byte     // final length; immutable once filled
	state *fillState // who wants the fill; what a hold keeps
	epoch uint64     // the file's epoch when the fill started
	// refs counts what keeps data in memory: the fill, the LRU, a queued
	// disk write, a reader copying from it or a reply pointing into it.
	// The last to let go returns the block's buffer and memory slot.
	refs atomic.Int32
	mem  *budget

	prefetched bool        // started ahead of the reader
	read       atomic.Bool // some reader copied from it
	ahead      atomic.Bool // prefetched, counted in the budget's ahead until settled

	mu     sync.Mutex
	filled int           // leading bytes of data that are final
	err    error         // set when the fill failed
	done   bool          // fill finished, with or without err
	wake   chan struct{} // closed and replaced whenever filled, err or done change
}

func newBlock(size int64, epoch uint64, mem *budget) *block {
	b := &block{data: mem.bufs.get(int(size)), state: &fillState{refs: 1}, epoch: epoch, mem: mem,
		wake: make(chan struct{})}
	b.refs.Store(1) // the fill's
	return b
}

// ref takes a hold on the block's memory, unless the last hold has gone
// and its buffer with it (to another block, perhaps): data may be read
// only under a hold.
func (b *block) ref() bool {
	for {
		n := b.refs.Load()
		if n <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unref lets go of one hold on the block's memory. The last one returns
// its buffer and its slot.
func (b *block) unref() {
	if b.refs.Add(-1) == 0 {
		b.settle(aheadDropped)
		b.mem.bufs.put(b.data)
		b.mem.release()
	}
}

// markRead records that a reader copied from the block.
func (b *block) markRead() {
	if !b.read.Load() {
		b.read.Store(true)
		b.settle(aheadRead)
	}
}

// settle ends the prefetched block's wait for a reader, if it still waits,
// and reports whether it did.
func (b *block) settle(how aheadOutcome) bool {
	if !b.ahead.Swap(false) {
		return false
	}
	b.mem.settle(how)
	return true
}

func (b *block) release() { b.state.release() }

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

// failed reports whether the fill finished with an error.
func (b *block) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done && b.err != nil
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

// join takes a hold on a fill unless it was cancelled before it finished.
// A finished fill serves whoever joins, even if everybody let go of it as
// it finished: so joining a cached block always succeeds.
func (s *fillState) join() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancelled && !s.done {
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
