package fs

import (
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// readBounds are the upper bounds, in seconds, of the READ latency
// histogram: a block cache hit takes microseconds, a fetch tens of
// milliseconds, a retried one seconds.
var readBounds = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// stats is what the mount counts of its own answers.
type stats struct {
	reads    [16]atomic.Uint64 // per bucket of readBounds, the last for +Inf
	readNano atomic.Int64      // sum of READ times

	mu     sync.Mutex
	errnos map[syscall.Errno]int64
	open   map[*fileHandle]time.Time // open build files, since when
}

// Histogram is a latency distribution as Prometheus has it: counts of
// observations at most each bound, cumulative.
type Histogram struct {
	Bounds     []float64 // seconds
	Cumulative []uint64  // per bound
	Count      uint64
	Sum        float64 // seconds
}

// OpenFile is a build file some process has open.
type OpenFile struct {
	Path    string // below the mountpoint
	Size    int64
	Fetched int64 // bytes of the file fetched from storage since this open (by any reader of it)
	Since   time.Time
}

// Stats is what the mount answered since it started.
type Stats struct {
	ReadLatency Histogram
	Errors      map[string]int64 // errors returned, by errno name (EIO, EACCES...)
	OpenFiles   []OpenFile       // by path
}

func (s *stats) observeRead(d time.Duration) {
	sec := d.Seconds()
	i := sort.SearchFloat64s(readBounds, sec) // first bound >= sec
	s.reads[i].Add(1)
	s.readNano.Add(int64(d))
}

func (s *stats) countErrno(e syscall.Errno) {
	if e == 0 {
		return
	}
	s.mu.Lock()
	if s.errnos == nil {
		s.errnos = make(map[syscall.Errno]int64)
	}
	s.errnos[e]++
	s.mu.Unlock()
}

func (s *stats) opened(h *fileHandle) {
	s.mu.Lock()
	if s.open == nil {
		s.open = make(map[*fileHandle]time.Time)
	}
	s.open[h] = time.Now()
	s.mu.Unlock()
}

func (s *stats) closed(h *fileHandle) {
	s.mu.Lock()
	delete(s.open, h)
	s.mu.Unlock()
}

// Stats returns what the mount answered so far.
func (f *FS) Stats() Stats {
	s := &f.stats
	h := Histogram{Bounds: readBounds, Cumulative: make([]uint64, len(readBounds))}
	var total uint64
	for i := range readBounds {
		total += s.reads[i].Load()
		h.Cumulative[i] = total
	}
	h.Count = total + s.reads[len(readBounds)].Load()
	h.Sum = time.Duration(s.readNano.Load()).Seconds()
	out := Stats{ReadLatency: h, Errors: map[string]int64{}}
	s.mu.Lock()
	for e, n := range s.errnos {
		out.Errors[errnoName(e)] = n
	}
	for fh, since := range s.open {
		out.OpenFiles = append(out.OpenFiles, OpenFile{Path: fh.node.path, Size: fh.size,
			Fetched: fh.file.Fetched() - fh.fetchedAtOpen, Since: since})
	}
	s.mu.Unlock()
	sort.Slice(out.OpenFiles, func(i, j int) bool { return out.OpenFiles[i].Path < out.OpenFiles[j].Path })
	return out
}

// errnoName is the symbolic name of the errnos the mount returns.
func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EIO:
		return "EIO"
	case syscall.EACCES:
		return "EACCES"
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EAGAIN:
		return "EAGAIN"
	case syscall.EINTR:
		return "EINTR"
	case syscall.EROFS:
		return "EROFS"
	}
	return e.Error()
}
