//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/appliveryfs/appliveryfs/fs"
)

const (
	mountTimeout = 30 * time.Second // from start until the mount shows in /proc/mounts
	exitTimeout  = 20 * time.Second // from SIGTERM until the process is gone
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
	label   string   // names the mount in messages, e.g. "appliveryfs cold"
	dir     string   // mountpoint
	file    string   // the benchmark file's path inside the mount
	logPath string   // the daemon's stdout and stderr go here
	env     []string // nil: this process's environment
	argv    []string
}

// mountProc is a mount daemon running as a subprocess.
type mountProc struct {
	mountSpec
	set      *mountSet
	cmd      *exec.Cmd
	log      *os.File
	exited   chan struct{}
	waitErr  error // valid once exited is closed
	exitSeen bool  // an early exit was already reported
	stopOnce sync.Once
	stopErr  error
}

// path returns the benchmark file inside the mount.
func (m *mountProc) path() string { return m.dir + "/" + m.file }

func (m *mountProc) pid() int { return m.cmd.Process.Pid }

// start runs a mount daemon and waits until its mount is up. On failure
// nothing is left running or mounted.
func (s *mountSet) start(spec mountSpec) (*mountProc, error) {
	logf, err := os.Create(spec.logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", spec.label, err)
	}
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = spec.env
	cmd.Dir = os.TempDir() // never a directory on a mount
	// If this process dies without cleaning up, the daemon gets SIGTERM
	// and unmounts by itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", spec.label, spec.argv[0], err)
	}
	m := &mountProc{mountSpec: spec, set: s, cmd: cmd, log: logf, exited: make(chan struct{})}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	if !s.add(m) {
		return nil, errors.Join(fmt.Errorf("%s: interrupted", spec.label), m.stop())
	}
	if err := m.waitMounted(); err != nil {
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

// waitMounted polls /proc/mounts until the mountpoint shows up.
func (m *mountProc) waitMounted() error {
	deadline := time.Now().Add(mountTimeout)
	for !isMounted(m.dir) {
		select {
		case <-m.exited:
			m.exitSeen = true
			return fmt.Errorf("%s exited before mounting (%v); log %s:\n%s",
				m.label, m.waitErr, m.logPath, tail(m.logPath, 10))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not mounted after %v; log %s:\n%s",
				m.label, m.dir, mountTimeout, m.logPath, tail(m.logPath, 10))
		}
	}
	return nil
}

// stop ends the daemon with SIGTERM (SIGKILL if it hangs) and makes sure
// its mount is gone, detaching it with umount -l as a last resort. It is
// safe to call more than once and from several goroutines.
func (m *mountProc) stop() error {
	m.stopOnce.Do(func() {
		m.stopErr = m.terminate()
		m.set.remove(m)
		m.log.Close()
	})
	return m.stopErr
}

func (m *mountProc) terminate() error {
	var errs []error
	select {
	case <-m.exited:
		if !m.exitSeen {
			errs = append(errs, fmt.Errorf("%s had exited on its own (%v); log %s", m.label, m.waitErr, m.logPath))
		}
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(exitTimeout):
			m.cmd.Process.Kill()
			<-m.exited
			errs = append(errs, fmt.Errorf("%s did not exit within %v of SIGTERM and was killed; log %s",
				m.label, exitTimeout, m.logPath))
		}
	}
	if isMounted(m.dir) {
		out, err := exec.Command("umount", "-l", m.dir).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s left %s mounted and umount -l failed: %v: %s",
				m.label, m.dir, err, bytes.TrimSpace(out)))
		} else {
			errs = append(errs, fmt.Errorf("%s left %s mounted; detached it with umount -l", m.label, m.dir))
		}
	}
	return errors.Join(errs...)
}

func isMounted(dir string) bool {
	m, _ := fs.IsMounted(dir)
	return m
}

// mountsUnder lists the mountpoints at or below dir.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			out = append(out, f[1])
		}
	}
	return out
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmHWM %q: %w", rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// tail returns the last n lines of a file, indented, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "  (empty)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(len(lines)-n, 0):]
	return "  " + strings.Join(lines, "\n  ")
}
