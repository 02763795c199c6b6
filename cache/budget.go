package cache

import (
	"context"
	"errors"
	"sync"
)

// errNoRoom means a prefetch found the memory budget taken; it is not an
// error for readers.
var errNoRoom = errors.New("memory budget full")

// budget is the one memory limit of a Cache, counted in blocks: every
// block that holds memory, being filled, cached, or evicted but still
// waiting for its disk write, has reserved a slot, and returns it when the
// last of those lets go. Prefetch may take at most three quarters of the
// slots, so a demand read always finds room once cached blocks are evicted.
//
// Prefetched blocks no reader has read yet are limited apart, additive
// increase and multiplicative decrease as TCP's window is: each one read
// allows one more, each a demand read had to evict unread halves what
// may be ahead. When more readers share the budget than it holds blocks for,
// prefetch shrinks to what they read instead of fetching bytes that are
// evicted before anyone reads them.
type budget struct {
	slots int
	bufs  buffers // the memory behind the slots

	mu       sync.Mutex
	used     int
	ahead    int           // slots held by prefetched blocks nobody has read yet
	aheadMax int           // how many of those may be
	starved  int           // demand reads that found no free slot and are making room
	freed    chan struct{} // closed (and replaced) when a slot is returned
}

func newBudget(slots int, blockSize int64, fresh bool) *budget {
	m := &budget{slots: slots, bufs: buffers{size: int(blockSize), fresh: fresh}, freed: make(chan struct{})}
	m.aheadMax = m.limit(false)
	return m
}

// aheadOutcome is how a prefetched block's wait for its reader ended.
type aheadOutcome int

const (
	aheadRead    aheadOutcome = iota // a reader read it: prefetch was right
	aheadEvicted                     // evicted unread: prefetch outran the budget
	aheadDropped                     // its fill failed or was cancelled: says nothing
)

// limit is how many slots may be in use for a reservation of this kind to succeed.
func (m *budget) limit(demand bool) int {
	if demand {
		return m.slots
	}
	return m.slots - m.slots/4
}

// tryReserve takes a slot if the kind's limit allows it. A prefetch's slot
// counts as ahead until settle.
func (m *budget) tryReserve(demand bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used >= m.limit(demand) || !demand && (m.ahead >= m.aheadMax || m.starved > 0) {
		return false
	}
	m.used++
	if !demand {
		m.ahead++
	}
	return true
}

// aheadRoom reports whether a prefetch may have a slot: the allowance has
// room, and no demand read is waiting for one.
func (m *budget) aheadRoom() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ahead < m.aheadMax && m.starved == 0
}

// starve counts a demand read that must make room (by +1, then -1 once it has).
func (m *budget) starve(n int) {
	m.mu.Lock()
	m.starved += n
	m.mu.Unlock()
}

// settle ends a prefetched block's wait for its reader, once per block.
func (m *budget) settle(how aheadOutcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch how {
	case aheadRead:
		m.aheadMax = min(m.aheadMax+1, m.limit(false))
	case aheadEvicted:
		// Half of what was ahead, not of the allowance: that may be far
		// above what the readers had fetched.
		m.aheadMax = max(min(m.aheadMax, m.ahead)/2, 1)
	}
	m.ahead--
}

// unreserve returns a slot reserved for a block that was never made.
func (m *budget) unreserve(demand bool) {
	if !demand {
		m.settle(aheadDropped)
	}
	m.release()
}

// release returns a slot and wakes whoever waits for room.
func (m *budget) release() {
	m.mu.Lock()
	m.used--
	close(m.freed)
	m.freed = make(chan struct{})
	m.mu.Unlock()
}

// room returns a channel closed when a slot is next returned. Taken before
// tryReserve, it cannot miss a release that happens in between.
func (m *budget) room() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.freed
}

// inUse is the number of slots reserved.
func (m *budget) inUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// reserve takes a memory slot for a new block, evicting the least recently
// used cached blocks to make room. A demand read waits for room as long as
// ctx allows; a prefetch never waits, and evicts nothing when even an empty
// LRU would leave it no room (the slots are held by fills and disk writes).
func (c *Cache) reserve(ctx context.Context, demand bool) error {
	starving := false
	defer func() {
		if starving {
			c.mem.starve(-1)
		}
	}()
	for {
		if !demand && !c.mem.aheadRoom() {
			return errNoRoom // evicting would make no room for a prefetch
		}
		room := c.mem.room()
		if c.mem.tryReserve(demand) {
			return nil
		}
		if !demand && c.mem.inUse()-c.lru.Len() >= c.mem.limit(false) {
			return errNoRoom
		}
		if demand && !starving {
			starving = true // no prefetch takes the room this read makes
			c.mem.starve(1)
		}
		if c.evictOne(demand) {
			continue // its slot is back unless a disk write still holds it
		}
		if !demand {
			return errNoRoom
		}
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// evictOne evicts the least recently used block that some reader has read
// already, or that no prefetch brought. A prefetched block nobody has read
// is a sequential reader's next bytes: evicting it for another reader's
// prefetch would only make the first fetch it again, so a prefetch never
// does, and a demand read does only when nothing else is near the old end.
// Passing over such a block moves it to the recent end, so the scan is
// bounded and costs no allocation, whatever the size of the cache.
func (c *Cache) evictOne(demand bool) bool {
	const scan = 16
	for range min(scan, c.lru.Len()) {
		k, b, ok := c.lru.GetOldest()
		if !ok {
			return false
		}
		if !b.prefetched || b.read.Load() {
			return c.lru.Remove(k)
		}
		c.lru.Get(k) // spared: to the recent end
	}
	if !demand {
		return false
	}
	_, _, ok := c.lru.RemoveOldest()
	return ok
}
