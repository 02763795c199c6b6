//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// mountSet tracks the live mounts so that all of them can be stopped at
// once, whatever is running when the bench is interrupted.
type mountSet struct {
	mu     sync.Mutex
	live   map[*mountProc]bool
	closed bool
}

// mountSpec is a mount daemon to start.
type mountSpec struct {
	runner.MountSpec
	file string // the benchmark file's path inside the mount
}

// mountProc is a mount daemon running as a subprocess.
type mountProc struct {
	*runner.Mount
	file string
	set  *mountSet
}

// path returns the benchmark file inside the mount.
func (m *mountProc) path() string { return m.Dir + "/" + m.file }

// start runs a mount daemon and waits until its mount is up. On failure
// nothing is left running or mounted.
func (s *mountSet) start(spec mountSpec) (*mountProc, error) {
	rm, err := runner.StartMount(spec.MountSpec)
	if err != nil {
		return nil, err
	}
	m := &mountProc{Mount: rm, file: spec.file, set: s}
	if !s.add(m) {
		return nil, errors.Join(fmt.Errorf("%s: interrupted", spec.Label), m.stop())
	}
	if err := m.WaitReady(context.Background(), 20*time.Millisecond, nil); err != nil {
		return nil, errors.Join(err, m.stop())
	}
	return m, nil
}

func (s *mountSet) add(m *mountProc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.live == nil {
		s.live = make(map[*mountProc]bool)
	}
	s.live[m] = true
	return true
}

func (s *mountSet) remove(m *mountProc) {
	s.mu.Lock()
	delete(s.live, m)
	s.mu.Unlock()
}

// stopAll stops every live mount and refuses new ones.
func (s *mountSet) stopAll() {
	s.mu.Lock()
	s.closed = true
	live := make([]*mountProc, 0, len(s.live))
	for m := range s.live {
		live = append(live, m)
	}
	s.mu.Unlock()
	for _, m := range live {
		if err := m.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
}

// stop stops the daemon (see runner.Mount.Stop) and forgets it. It is
// safe to call more than once and from several goroutines.
func (m *mountProc) stop() error {
	err := m.Stop()
	m.set.remove(m)
	return err
}
