package cache

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestPrefetchAllowanceGrowsAndHalves(t *testing.T) {
	m := newBudget(16, testBlock, false)
	if m.aheadMax != 12 {
		t.Fatalf("allowance %d at start, want the prefetch limit 12", m.aheadMax)
	}
	for range 12 {
		if !m.tryReserve(false) {
			t.Fatal("prefetch refused within its allowance")
		}
	}
	if m.tryReserve(false) {
		t.Fatal("prefetch past its allowance")
	}
	m.settle(aheadEvicted)
	m.release()
	if m.aheadMax != 6 || m.ahead != 11 {
		t.Fatalf("after an eviction: allowance %d, ahead %d; want 6, 11", m.aheadMax, m.ahead)
	}
	if m.tryReserve(false) {
		t.Fatal("prefetch past its halved allowance")
	}
	if !m.tryReserve(true) {
		t.Fatal("demand read refused with slots free")
	}
	for range 11 {
		m.settle(aheadRead)
	}
	if m.aheadMax != 12 || m.ahead != 0 {
		t.Fatalf("after reads: allowance %d, ahead %d; want 12 (the cap), 0", m.aheadMax, m.ahead)
	}
	m.ahead = 4 // halving takes half of what was ahead, not of the allowance
	m.settle(aheadEvicted)
	m.settle(aheadDropped) // neither grows nor shrinks
	if m.aheadMax != 2 || m.ahead != 2 {
		t.Fatalf("allowance %d, ahead %d; want 2, 2", m.aheadMax, m.ahead)
	}
	m.settle(aheadRead)
	m.release() // a slot free, one ahead of an allowance of three
	m.starve(1)
	if m.tryReserve(false) {
		t.Fatal("prefetch took a slot while a demand read waits for one")
	}
	m.starve(-1)
	if !m.tryReserve(false) {
		t.Fatal("prefetch refused within its allowance")
	}
}

// More sequential readers than the budget has blocks: prefetch must shrink
// to what they read, not fetch blocks that are evicted unread.
func TestOversubscribedBudgetWastesFewPrefetches(t *testing.T) {
	const readers, blocks = 16, 48
	c := newTestCache(t, Config{MemoryBytes: 12 * testBlock, MaxAhead: 8, MaxFetches: 8})
	var wg sync.WaitGroup
	for i := range readers {
		src := newMemSource(blocks*testBlock, uint64(10+i))
		src.delay = time.Millisecond
		f := c.File(FileKey{Build: fmt.Sprintf("ffffffffffffffffffffff%02d", i), Type: "file"}, int64(len(src.data)), "", src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.NewReader()
			defer r.Close()
			if got := readFull(t, r, len(src.data), 32<<10); !bytes.Equal(got, src.data) {
				t.Error("wrong bytes")
			}
		}()
	}
	wg.Wait()
	st := c.Stats()
	t.Logf("prefetched %d, wasted %d, fetched %d of %d blocks", st.Prefetches, st.PrefetchWasted, st.Fetches, readers*blocks)
	if st.PrefetchWasted > st.Prefetches/20 {
		t.Errorf("%d of %d prefetched blocks evicted unread", st.PrefetchWasted, st.Prefetches)
	}
	c.Close() // every fill done: nothing may still count as ahead but cached blocks
	cachedAhead := 0
	for _, b := range c.lru.Values() {
		if b.ahead.Load() {
			cachedAhead++
		}
	}
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	if c.mem.ahead != cachedAhead {
		t.Errorf("%d blocks counted ahead, %d cached unread", c.mem.ahead, cachedAhead)
	}
}

// A first read at offset 0 (a copy starting) opens the prefetch window as
// soon as its block's first bytes arrive, not before (the first byte has
// the link to itself); a first read elsewhere (unzip reading the directory
// at the end) fetches only its own block.
func TestStartWindow(t *testing.T) {
	for _, tc := range []struct {
		start int
		off   int64
		want  int
	}{{4, 0, 5}, {4, 10 * testBlock, 1}, {0, 0, 1}, {40, 0, 9}} { // 40: capped at MaxAhead 8
		src := newMemSource(32*testBlock, 3)
		src.delay = 60 * time.Millisecond
		c := newTestCache(t, Config{MemoryBytes: 32 * testBlock, MaxAhead: 8, StartWindow: tc.start})
		r := c.File(FileKey{Build: "cccccccccccccccccccccccc", Type: "file"}, int64(len(src.data)), "", src).NewReader()
		buf := make([]byte, 4096)
		read := make(chan error, 1)
		go func() {
			_, err := r.ReadAt(context.Background(), buf, tc.off)
			read <- err
		}()
		time.Sleep(30 * time.Millisecond)
		if got := src.requests(); got > 1 {
			t.Errorf("start window %d, first read at %d: %d fetches before its first bytes, want 1", tc.start, tc.off, got)
		}
		if err := <-read; err != nil || !bytes.Equal(buf, src.data[tc.off:tc.off+4096]) {
			t.Fatalf("read at %d: %v or wrong bytes", tc.off, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for src.requests() < tc.want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // room for fetches that should not start
		if got := src.requests(); got != tc.want {
			t.Errorf("start window %d, first read at %d: %d fetches, want %d", tc.start, tc.off, got, tc.want)
		}
		r.Close()
	}
}
