package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Buffers go from evicted blocks to new ones while readers copy from
// blocks and replies point into them: no reader may ever see another
// block's bytes. Eight readers of four files in a budget of six blocks, at
// random offsets, half of them borrowing the bytes and checking them again
// after a pause (a reply waiting for its write to the kernel).
func TestReusedBuffersNeverServeOtherBytes(t *testing.T) {
	c := newTestCache(t, Config{MemoryBytes: 6 * testBlock, MaxAhead: 2})
	var files []*File
	var srcs []*memSource
	for i := range 4 {
		src := newMemSource(24*testBlock+i*1000, uint64(40+i))
		srcs = append(srcs, src)
		files = append(files, c.File(FileKey{Build: fmt.Sprintf("dddddddddddddddddddddd%02d", i), Type: "file"}, int64(len(src.data)), "", src))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for range 300 {
				i := rng.IntN(len(files))
				data := srcs[i].data
				r := files[i].NewReader()
				off := rng.Int64N(int64(len(data)))
				n := 1 + rng.IntN(96<<10)
				want := data[off:min(off+int64(n), int64(len(data)))]
				if w%2 == 0 {
					l, ok, err := r.Lend(context.Background(), off, n)
					if ok {
						if err != nil && err != io.EOF {
							t.Errorf("lend %d at %d: %v", n, off, err)
						} else if time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond); !bytes.Equal(l.Data, want) {
							t.Errorf("lent bytes at %d of file %d changed or wrong", off, i)
						}
						l.Release()
						r.Close()
						continue
					}
				}
				buf := make([]byte, n)
				m, err := r.ReadAt(context.Background(), buf, off)
				if err != nil && err != io.EOF {
					t.Errorf("read %d at %d: %v", n, off, err)
				} else if !bytes.Equal(buf[:m], want) {
					t.Errorf("read at %d of file %d: wrong bytes", off, i)
				}
				r.Close()
			}
		}()
	}
	wg.Wait()
	if used := c.mem.inUse(); used > c.mem.slots {
		t.Errorf("%d slots in use of %d", used, c.mem.slots)
	}
	c.mem.bufs.mu.Lock()
	free := len(c.mem.bufs.free)
	c.mem.bufs.mu.Unlock()
	if free+c.mem.inUse() > c.mem.slots {
		t.Errorf("%d free buffers and %d in use: more than the %d slots", free, c.mem.inUse(), c.mem.slots)
	}
}

func TestBuffersReuseAndFresh(t *testing.T) {
	p := buffers{size: 1 << 16}
	a := p.get(100)
	a[0] = 7
	p.put(a)
	if b := p.get(1 << 16); &b[0] != &a[0] || len(b) != 1<<16 {
		t.Error("a returned buffer was not reused at full length")
	}
	f := buffers{size: 1 << 16, fresh: true}
	x := f.get(10)
	f.put(x)
	if y := f.get(10); &y[0] == &x[0] {
		t.Error("fresh buffers reused one")
	}
}
