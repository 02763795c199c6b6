package disk

import (
	"errors"
	"log/slog"
	"sync"
	"syscall"
)

// troubles logs each kind of failure of the disk cache once. A disk that
// is full, read-only or gone, or a block found damaged, costs fetches from
// the network, never correctness, and must not flood the log of a mount
// that keeps working through it.
type troubles struct {
	mu   sync.Mutex
	log  *slog.Logger
	seen map[string]bool
}

// SetLogger makes the cache log, once per cause, what goes wrong with it.
func (c *Cache) SetLogger(l *slog.Logger) {
	c.trouble.mu.Lock()
	c.trouble.log = l
	c.trouble.mu.Unlock()
}

// note logs cause the first time it happens.
func (c *Cache) note(cause string, attrs ...any) {
	t := &c.trouble
	t.mu.Lock()
	log := t.log
	first := !t.seen[cause]
	if first {
		if t.seen == nil {
			t.seen = make(map[string]bool)
		}
		t.seen[cause] = true
	}
	t.mu.Unlock()
	if first && log != nil {
		log.Warn("disk cache: "+cause+" (logged once; reads go to the network)", append([]any{"dir", c.dir}, attrs...)...)
	}
}

// causeOf names what an I/O error was, for note: its errno when it has one.
func causeOf(op string, err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return op + " failed: " + errno.Error()
	}
	return op + " failed"
}
