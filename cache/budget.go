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
type budget struct {
	slots int

	mu    sync.Mutex
	used  int
	freed chan struct{} // closed (and replaced) when a slot is returned
}

func newBudget(slots int) *budget {
	return &budget{slots: slots, freed: make(chan struct{})}
}

// limit is how many slots may be in use for a reservation of this kind to succeed.
func (m *budget) limit(demand bool) int {
	if demand {
		return m.slots
	}
	return m.slots - m.slots/4
}

// tryReserve takes a slot if the kind's limit allows it.
func (m *budget) tryReserve(demand bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used >= m.limit(demand) {
		return false
	}
	m.used++
	return true
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
	for {
		room := c.mem.room()
		if c.mem.tryReserve(demand) {
			return nil
		}
		if !demand && c.mem.inUse()-c.lru.Len() >= c.mem.limit(false) {
			return errNoRoom
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
