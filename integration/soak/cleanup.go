//go:build linux

package main

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// cleanup runs registered functions once, last registered first: at the
// end of run, while a panic unwinds, or on a second SIGINT/SIGTERM/SIGHUP.
type cleanup struct {
	mu          sync.Mutex
	funcs       []func()
	done        bool
	once        sync.Once // callers of run wait until the first one is through
	interrupted atomic.Bool
}

// add registers f. After cleanup has run, f runs at once.
func (c *cleanup) add(f func()) {
	c.mu.Lock()
	if !c.done {
		c.funcs = append(c.funcs, f)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// run calls the registered functions in reverse order. Only the first
// call does; later and concurrent ones return when it is finished.
func (c *cleanup) run() {
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

// runOnSignal makes the first interrupt call stop, so that the soak winds
// down and reports what it has seen, and a second one clean up and exit
// with status 130 at once. The returned function stops listening.
func (c *cleanup) runOnSignal(stop func()) (unlisten func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	quit := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			c.interrupted.Store(true)
			fmt.Fprintf(os.Stderr, "\nsoak: %v: stopping the readers; again to quit at once\n", s)
			stop()
		case <-quit:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "\nsoak: %v: unmounting and cleaning up\n", s)
			c.run()
			os.Exit(130)
		case <-quit:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(quit)
	}
}

// goSafe runs fn in a goroutine whose panic still unmounts: a panic in a
// goroutine other than main's would otherwise end the process without
// running main's deferred cleanup. done runs before the cleanup, so that
// a cleanup waiting for this goroutine does not wait forever.
func (c *cleanup) goSafe(done func(), fn func()) {
	go func() {
		defer func() {
			r := recover()
			done()
			if r != nil {
				c.run()
				panic(r)
			}
		}()
		fn()
	}()
}
