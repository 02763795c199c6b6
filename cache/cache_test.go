package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/cache/disk"
)

// memSource serves bytes from memory and counts what it was asked.
type memSource struct {
	data  []byte
	delay time.Duration

	mu       sync.Mutex
	calls    map[int64]int // offset -> requests
	inflight atomic.Int64
	peak     atomic.Int64
	started  chan int64 // optional: offsets as requests start
}

func newMemSource(size int, seed uint64) *memSource {
	r := rand.New(rand.NewPCG(seed, seed))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return &memSource{data: data, calls: map[int64]int{}}
}

func (s *memSource) ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(int)) (int, error) {
	s.mu.Lock()
	s.calls[off]++
	s.mu.Unlock()
	if s.started != nil {
		s.started <- off
	}
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		peak := s.peak.Load()
		if n <= peak || s.peak.CompareAndSwap(peak, n) {
			break
		}
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if off >= int64(len(s.data)) {
		return 0, io.EOF
	}
	n2 := copy(p, s.data[off:])
	progress(n2)
	return n2, nil
}

func (s *memSource) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, n := range s.calls {
		total += n
	}
	return total
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const testBlock = 64 << 10

func newTestCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	if cfg.BlockSize == 0 {
		cfg.BlockSize = testBlock
	}
	if cfg.MaxAhead == 0 {
		cfg.MaxAhead = 16
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func readFull(t *testing.T, r *Reader, size int, chunk int) []byte {
	t.Helper()
	out := make([]byte, 0, size)
	buf := make([]byte, chunk)
	for off := int64(0); ; {
		n, err := r.ReadAt(context.Background(), buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if err == io.EOF || (err == nil && n == 0) {
			return out
		}
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
}

func TestMemoryReadAndReread(t *testing.T) {
	src := newMemSource(10*testBlock+123, 1)
	c := newTestCache(t, Config{MemoryBytes: 64 * testBlock})
	f := c.File(FileKey{Build: "aaaaaaaaaaaaaaaaaaaaaaaa", Type: "file"}, int64(len(src.data)), sum(src.data), src)
	r := f.NewReader()
	got := readFull(t, r, len(src.data), 50_000) // unaligned reads straddle blocks
	r.Close()
	if !bytes.Equal(got, src.data) {
		t.Fatal("wrong bytes")
	}
	if n := src.requests(); n != 11 {
		t.Errorf("%d requests for 11 blocks", n)
	}
	if st := c.Stats(); st.Verified != 1 {
		t.Errorf("verified %d, want 1", st.Verified)
	}
	before := src.requests()
	r2 := f.NewReader()
	if got := readFull(t, r2, len(src.data), 4096); !bytes.Equal(got, src.data) {
		t.Fatal("wrong bytes on re-read")
	}
	if src.requests() != before {
		t.Errorf("re-read of cached data made %d requests", src.requests()-before)
	}
}

func TestConcurrentReadsShareOneRequest(t *testing.T) {
	src := newMemSource(4*testBlock, 2)
	src.delay = 50 * time.Millisecond
	c := newTestCache(t, Config{MemoryBytes: 64 * testBlock})
	f := c.File(FileKey{Build: "bbbbbbbbbbbbbbbbbbbbbbbb", Type: "file"}, int64(len(src.data)), "", src)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.NewReader()
			defer r.Close()
			buf := make([]byte, 1000)
			if _, err := r.ReadAt(context.Background(), buf, 2*testBlock+5); err != nil || !bytes.Equal(buf, src.data[2*testBlock+5:][:1000]) {
				t.Errorf("read: %v", err)
			}
		}()
	}
	wg.Wait()
	src.mu.Lock()
	n := src.calls[2*testBlock]
	src.mu.Unlock()
	if n != 1 {
		t.Errorf("16 concurrent reads of one block made %d requests", n)
	}
}

func TestRandomReadsFetchOnlyWhatTheyTouch(t *testing.T) {
	src := newMemSource(100*testBlock, 3)
	c := newTestCache(t, Config{MemoryBytes: 64 * testBlock})
	f := c.File(FileKey{Build: "cccccccccccccccccccccccc", Type: "file"}, int64(len(src.data)), "", src)
	r := f.NewReader()
	defer r.Close()
	buf := make([]byte, 100)
	for _, off := range []int64{99*testBlock + 10, 99*testBlock + 500, 37 * testBlock, 3*testBlock + 7} {
		if _, err := r.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.requests(); n != 3 {
		t.Errorf("4 random reads in 3 blocks made %d requests, want 3", n)
	}
}

func TestSequentialPrefetchGrowsAndStaysInBudget(t *testing.T) {
	src := newMemSource(200*testBlock, 4)
	src.delay = 5 * time.Millisecond
	c := newTestCache(t, Config{MemoryBytes: 32 * testBlock, MaxAhead: 8})
	f := c.File(FileKey{Build: "dddddddddddddddddddddddd", Type: "file"}, int64(len(src.data)), sum(src.data), src)
	r := f.NewReader()
	over := watchBudget(c)
	got := readFull(t, r, len(src.data), 16<<10)
	r.Close()
	if o := over(); o != 0 {
		t.Errorf("%d blocks held at once while reading, budget %d", o, c.mem.slots)
	}
	if !bytes.Equal(got, src.data) {
		t.Fatal("wrong bytes")
	}
	st := c.Stats()
	if st.Prefetches < 100 {
		t.Errorf("only %d of 200 blocks prefetched", st.Prefetches)
	}
	if p := src.peak.Load(); p < 4 {
		t.Errorf("at most %d requests in flight: the window did not grow", p)
	}
	if n := src.requests(); n > 200+8 {
		t.Errorf("%d requests for 200 blocks: blocks fetched twice", n)
	}
}

func TestBudgetHoldsUnderManyReaders(t *testing.T) {
	src := newMemSource(64*testBlock, 5)
	src.delay = 2 * time.Millisecond
	c := newTestCache(t, Config{MemoryBytes: 8 * testBlock, MaxAhead: 4})
	over := watchBudget(c)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		f := c.File(FileKey{Build: "eeeeeeeeeeeeeeeeeeeeeee" + string(rune('a'+i)), Type: "file"}, int64(len(src.data)), "", src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.NewReader()
			defer r.Close()
			if got := readFull(t, r, len(src.data), 40_000); !bytes.Equal(got, src.data) {
				t.Error("wrong bytes")
			}
		}()
	}
	wg.Wait()
	if o := over(); o != 0 {
		t.Errorf("%d blocks held at once, budget %d", o, c.mem.slots)
	}
}

// watchBudget samples the blocks the cache holds until the returned
// function is called, which reports the worst count over the budget (0 if
// it never went over).
func watchBudget(c *Cache) func() int {
	stop, done := make(chan struct{}), make(chan struct{})
	worst := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if used := c.mem.inUse(); used > c.mem.slots && used > worst {
				worst = used
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return func() int {
		close(stop)
		<-done
		return worst
	}
}

func TestChecksumMismatchFailsAndDrops(t *testing.T) {
	src := newMemSource(5*testBlock, 6)
	c := newTestCache(t, Config{MemoryBytes: 64 * testBlock})
	bad := sum([]byte("something else"))
	f := c.File(FileKey{Build: "ffffffffffffffffffffffff", Type: "file"}, int64(len(src.data)), bad, src)
	r := f.NewReader()
	buf := make([]byte, 32<<10)
	var err error
	for off := int64(0); err == nil; off += int64(len(buf)) {
		_, err = r.ReadAt(context.Background(), buf, off)
	}
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("reading a file that does not match its checksum: %v", err)
	}
	if _, err := r.ReadAt(context.Background(), buf, 0); !errors.Is(err, ErrChecksum) {
		t.Errorf("a read after the mismatch on the same open: %v, want ErrChecksum", err)
	}
	if n := c.lru.Len(); n != 0 {
		t.Errorf("%d blocks still cached after a mismatch", n)
	}
	r.Close()
	// A new open fetches afresh.
	before := src.requests()
	if _, err := f.NewReader().ReadAt(context.Background(), buf, 0); err != nil {
		t.Errorf("read after reopening: %v", err)
	}
	if src.requests() == before {
		t.Error("reopen served dropped blocks")
	}
}

func TestCloseCancelsOrphanedPrefetch(t *testing.T) {
	src := newMemSource(64*testBlock, 7)
	src.delay = 10 * time.Second
	src.started = make(chan int64, 128)
	c := newTestCache(t, Config{MemoryBytes: 64 * testBlock, MaxAhead: 8})
	f := c.File(FileKey{Build: "abababababababababababab", Type: "file"}, int64(len(src.data)), "", src)
	r := f.NewReader()
	// Two sequential reads: the second starts prefetching blocks 1 and 2.
	for _, off := range []int64{0, 10} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		if _, err := r.ReadAt(ctx, make([]byte, 10), off); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read with a 100ms deadline on a 10s source: %v", err)
		}
		cancel()
	}
	if n := src.inflight.Load(); n < 3 {
		t.Fatalf("%d fetches in flight, want block 0 and two prefetched", n)
	}
	r.Close()
	deadline := time.Now().Add(2 * time.Second)
	for src.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches still running after the reader closed", src.inflight.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDiskBackedRemount(t *testing.T) {
	dir := t.TempDir()
	src := newMemSource(7*testBlock+99, 8)
	key := FileKey{Build: "a1a1a1a1a1a1a1a1a1a1a1a1", Type: "aab"}
	for round := 0; round < 2; round++ {
		d, err := disk.Open(dir, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{BlockSize: testBlock, MemoryBytes: 64 * testBlock, Store: d, MaxAhead: 16})
		if err != nil {
			t.Fatal(err)
		}
		before := src.requests()
		r := c.File(key, int64(len(src.data)), sum(src.data), src).NewReader()
		if got := readFull(t, r, len(src.data), 30_000); !bytes.Equal(got, src.data) {
			t.Fatalf("round %d: wrong bytes", round)
		}
		r.Close()
		c.Close()
		d.Close()
		if round == 1 && src.requests() != before {
			t.Errorf("second round made %d source requests, want 0", src.requests()-before)
		}
		if st := c.Stats(); st.Verified != int64(1-round) {
			t.Errorf("round %d verified %d files; want the first round only (disk blocks of a verified file are trusted)", round, st.Verified)
		}
	}
}

// TestMismatchFoundWhateverTheOrder reads a file backwards, the way a
// reader that starts at the end (or out-of-order readahead) would: the
// read that completes the file still gets the checksum verdict.
func TestMismatchFoundWhateverTheOrder(t *testing.T) {
	src := newMemSource(12*testBlock+77, 9)
	// Fewer slots than blocks: the check has to fetch evicted blocks again.
	c := newTestCache(t, Config{MemoryBytes: 8 * testBlock})
	f := c.File(FileKey{Build: "cdcdcdcdcdcdcdcdcdcdcdcd", Type: "file"}, int64(len(src.data)), sum([]byte("other")), src)
	r := f.NewReader()
	defer r.Close()
	buf := make([]byte, 20_000)
	var last error
	for off := int64(len(src.data)) - 1; off >= 0; off -= int64(len(buf)) {
		start := max(0, off-int64(len(buf))+1)
		if _, err := r.ReadAt(context.Background(), buf[:off-start+1], start); err != nil {
			last = err
			break
		}
	}
	if !errors.Is(last, ErrChecksum) {
		t.Fatalf("reading every byte backwards: %v, want ErrChecksum", last)
	}
	// With the right checksum the same pattern passes and is counted.
	f2 := c.File(FileKey{Build: "dcdcdcdcdcdcdcdcdcdcdcdc", Type: "file"}, int64(len(src.data)), sum(src.data), src)
	r2 := f2.NewReader()
	defer r2.Close()
	for off := int64(len(src.data)) - 1; off >= 0; off -= int64(len(buf)) {
		start := max(0, off-int64(len(buf))+1)
		if _, err := r2.ReadAt(context.Background(), buf[:off-start+1], start); err != nil {
			t.Fatalf("correct file read backwards: %v", err)
		}
	}
	if st := c.Stats(); st.Verified != 1 || st.Mismatches != 1 {
		t.Errorf("verified %d, mismatches %d; want 1 and 1", st.Verified, st.Mismatches)
	}
}

// TestUnverifiedNetworkBlocksOfATrustedFile: a file verified on an earlier
// run is not hashed again while it comes from disk, but is as soon as a
// block has to come from storage.
func TestUnverifiedNetworkBlocksOfATrustedFile(t *testing.T) {
	dir := t.TempDir()
	src := newMemSource(4*testBlock, 10)
	key := FileKey{Build: "efefefefefefefefefefefef", Type: "file"}
	d, err := disk.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SetVerified(key, sum(src.data)); err != nil {
		t.Fatal(err)
	}
	// Nothing is on disk, so every block comes from storage, whose bytes
	// no longer match: the earlier verdict must not cover them.
	c, err := New(Config{BlockSize: testBlock, MemoryBytes: 64 * testBlock, Store: d, MaxAhead: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.File(key, int64(len(src.data)), sum(src.data), src).NewReader()
	defer r.Close()
	src.data[100] ^= 0xff // storage now serves other bytes than the checksum says
	buf := make([]byte, 10_000)
	var last error
	for off := int64(0); off < int64(len(src.data)) && last == nil; off += int64(len(buf)) {
		_, last = r.ReadAt(context.Background(), buf, off)
	}
	if !errors.Is(last, ErrChecksum) {
		t.Errorf("a trusted file read from storage with other bytes: %v, want ErrChecksum", last)
	}
}

// TestVerdictOutlivesTheReadDeadline is the reported failure: a file
// larger than the memory budget, read backwards with a short deadline per
// read. The read that completes the checksum must wait for the verdict
// however long the refetches of evicted blocks take, and get it: correct
// bytes never fail on a deadline of ours.
func TestVerdictOutlivesTheReadDeadline(t *testing.T) {
	src := newMemSource(32*testBlock, 11)
	src.delay = 40 * time.Millisecond
	c := newTestCache(t, Config{MemoryBytes: 8 * testBlock, IOTimeout: 300 * time.Millisecond})
	f := c.File(FileKey{Build: "fefefefefefefefefefefefe", Type: "file"}, int64(len(src.data)), sum(src.data), src)
	r := f.NewReader()
	defer r.Close()
	buf := make([]byte, testBlock)
	for idx := int64(31); idx >= 0; idx-- {
		n, err := r.ReadAt(context.Background(), buf, idx*testBlock)
		if err != nil || !bytes.Equal(buf[:n], src.data[idx*testBlock:][:n]) {
			t.Fatalf("read of block %d: %d bytes, %v", idx, n, err)
		}
	}
	if st := c.Stats(); st.Verified != 1 {
		t.Errorf("verified %d files, want 1", st.Verified)
	}
	t.Logf("%d fetches for 32 blocks", src.requests())
}

func TestPrefetchOff(t *testing.T) {
	src := newMemSource(16*testBlock, 12)
	c, err := New(Config{BlockSize: testBlock, MemoryBytes: 64 * testBlock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.File(FileKey{Build: "abcabcabcabcabcabcabcabc", Type: "file"}, int64(len(src.data)), "", src).NewReader()
	defer r.Close()
	if got := readFull(t, r, len(src.data), 64<<10); !bytes.Equal(got, src.data) {
		t.Fatal("wrong bytes")
	}
	r.Close()
	c.Close() // bytes stream to readers before their fill counts itself: wait for the fills
	if st := c.Stats(); st.Prefetches != 0 || st.Fetches != 16 {
		t.Errorf("MaxAhead 0: %d prefetches, %d fetches; want none ahead, one per block", st.Prefetches, st.Fetches)
	}
	if _, err := New(Config{MaxAhead: -1}); err == nil {
		t.Error("a negative window was accepted")
	}
}

// finishingSource completes every read, however it was cancelled.
type finishingSource struct{ data []byte }

func (s *finishingSource) ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(int)) (int, error) {
	<-ctx.Done() // cancelled: let go of by its last holder
	n := copy(p, s.data[off:])
	progress(n)
	return n, nil
}

// TestBlockLetGoAsItFinishesStaysUsable: a fill every holder let go of
// just as it completed is cached anyway; it must then be joinable, or the
// next read of it would loop forever.
func TestBlockLetGoAsItFinishesStaysUsable(t *testing.T) {
	src := &finishingSource{data: bytes.Repeat([]byte("x"), 4*testBlock)}
	c := newTestCache(t, Config{MemoryBytes: 16 * testBlock, IOTimeout: 5 * time.Second})
	f := c.File(FileKey{Build: "1212121212121212121212aa", Type: "file"}, int64(len(src.data)), "", src)
	b, err := c.acquire(context.Background(), f, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	b.release() // the last holder: the fill is cancelled, and completes anyway
	for deadline := time.Now().Add(5 * time.Second); !b.state.finished(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fill never finished")
		}
	}
	r := f.NewReader()
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	buf := make([]byte, 100)
	if n, err := r.ReadAt(ctx, buf, 0); err != nil || n != 100 {
		t.Fatalf("read of a block let go as it finished: %d, %v", n, err)
	}
}
