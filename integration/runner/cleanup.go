//go:build linux

package runner

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Cleanup runs registered functions once, last registered first: at the
// end of a run, while a panic unwinds, or on SIGINT/SIGTERM/SIGHUP (see
// RunOnSignal and RunOnSecondSignal). The zero value is ready to use.
type Cleanup struct {
	mu          sync.Mutex
	funcs       []func()
	done        bool
	once        sync.Once // callers of Run wait until the first one is through
	interrupted atomic.Bool
}

// Add registers f. After the cleanup has run, f runs at once.
func (c *Cleanup) Add(f func()) {
	c.mu.Lock()
	if !c.done {
		c.funcs = append(c.funcs, f)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// Run calls the registered functions in reverse order. Only the first
// call does; later and concurrent ones return when it is finished.
func (c *Cleanup) Run() {
	c.once.Do(func() {
		c.mu.Lock()
		funcs := c.funcs
		c.funcs, c.done = nil, true
		c.mu.Unlock()
		for i := len(funcs) - 1; i >= 0; i-- {
			funcs[i]()
		}
	})
}

// Interrupted reports whether a signal has arrived.
func (c *Cleanup) Interrupted() bool { return c.interrupted.Load() }

// RunOnSignal makes an interrupt clean up and exit with status 130. prog
// starts the message it prints. The returned function stops listening.
func (c *Cleanup) RunOnSignal(prog string) (unlisten func()) {
	return c.onSignal(prog, "", nil)
}

// RunOnSecondSignal makes the first interrupt call stop, after a message
// that says it is stopping (e.g. "stopping the readers"), so that the
// run winds down and reports what it has seen; a second one cleans up and
// exits with status 130 at once. prog starts the messages. The returned
// function stops listening.
func (c *Cleanup) RunOnSecondSignal(prog, stopping string, stop func()) (unlisten func()) {
	return c.onSignal(prog, stopping, stop)
}

func (c *Cleanup) onSignal(prog, stopping string, stop func()) (unlisten func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	quit := make(chan struct{})
	go func() {
		if stop != nil {
			select {
			case s := <-sigs:
				c.interrupted.Store(true)
				fmt.Fprintf(os.Stderr, "\n%s: %v: %s; again to quit at once\n", prog, s, stopping)
				stop()
			case <-quit:
				return
			}
		}
		select {
		case s := <-sigs:
			c.interrupted.Store(true)
			fmt.Fprintf(os.Stderr, "\n%s: %v: unmounting and cleaning up\n", prog, s)
			c.Run()
			os.Exit(130)
		case <-quit:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(quit)
	}
}

// Go runs fn in a goroutine whose panic still cleans up: a panic in a
// goroutine other than main's would otherwise end the process without
// running main's deferred cleanup. done runs before the cleanup, so that
// a cleanup waiting for this goroutine does not wait forever.
func (c *Cleanup) Go(done func(), fn func()) {
	go func() {
		defer func() {
			r := recover()
			done()
			if r != nil {
				c.Run()
				panic(r)
			}
		}()
		fn()
	}()
}

// ScratchDir makes a temporary directory named after pattern and removes
// it at cleanup, unless something is still mounted below it: removing a
// live mount's files would read, or hang on, the mount.
func (c *Cleanup) ScratchDir(prog, pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	c.Add(func() {
		if left := MountsUnder(dir); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%s: not removing %s: still mounted: %s\n", prog, dir, strings.Join(left, " "))
			return
		}
		// Retried: work interrupted meanwhile may still create files in it.
		for range 3 {
			if err := os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(os.Stderr, "%s: could not remove %s\n", prog, dir)
	})
	return dir, nil
}
