//go:build linux

package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	mountTimeout = 30 * time.Second // from start until the mount is ready
	exitTimeout  = 20 * time.Second // from SIGTERM until the process is gone
)

// MountSpec is a mount daemon to start.
type MountSpec struct {
	Label   string   // names the mount in messages, e.g. "appliveryfs (cold)" or "the mount"
	Dir     string   // mountpoint
	LogPath string   // the daemon's stdout and stderr go here
	Env     []string // nil: this process's environment
	Argv    []string
	// OwnGroup puts the daemon in its own process group, so that Ctrl-C
	// in the terminal does not stop it: the cleanup does, in its turn.
	OwnGroup bool
	// CheckExit makes a non-zero exit after SIGTERM an error of Stop.
	CheckExit bool
}

// Mount is a mount daemon running as a subprocess.
type Mount struct {
	MountSpec
	cmd      *exec.Cmd
	log      *os.File
	exited   chan struct{}
	waitErr  error       // valid once exited is closed
	exitSeen bool        // an early exit was already reported
	quit     atomic.Bool // DumpAndQuit asked it to exit
	stopOnce sync.Once
	stopErr  error
}

// StartMount starts a mount daemon; WaitReady waits for its mount. If
// this process dies without cleaning up, the daemon gets SIGTERM and
// unmounts by itself.
func StartMount(spec MountSpec) (*Mount, error) {
	logf, err := os.Create(spec.LogPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", spec.Label, err)
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = spec.Env
	cmd.Dir = os.TempDir() // never a directory on a mount
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: spec.OwnGroup}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", spec.Label, spec.Argv[0], err)
	}
	m := &Mount{MountSpec: spec, cmd: cmd, log: logf, exited: make(chan struct{})}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	return m, nil
}

// Pid is the daemon's process id.
func (m *Mount) Pid() int { return m.cmd.Process.Pid }

// Alive reports whether the daemon is still running.
func (m *Mount) Alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// WaitErr is how the daemon exited; nil while it is Alive.
func (m *Mount) WaitErr() error {
	if m.Alive() {
		return nil
	}
	return m.waitErr
}

// WaitReady polls /proc/mounts every poll until the mountpoint shows up
// and ready, if not nil, reports true as well. It gives up when the
// daemon exits, ctx is done or the mount is not ready within 30 seconds.
func (m *Mount) WaitReady(ctx context.Context, poll time.Duration, ready func() bool) error {
	deadline := time.Now().Add(mountTimeout)
	for {
		// ready first: it may record what it finds before the mount is up.
		if (ready == nil || ready()) && IsMounted(m.Dir) {
			return nil
		}
		select {
		case <-m.exited:
			m.exitSeen = true
			return fmt.Errorf("%s exited before mounting (%v); log %s:\n%s",
				m.Label, m.waitErr, m.LogPath, Tail(m.LogPath, 10))
		case <-ctx.Done():
			return fmt.Errorf("%s: interrupted while mounting", m.Label)
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			what := "not mounted"
			if IsMounted(m.Dir) {
				what = "mounted but not ready"
			}
			return fmt.Errorf("%s: %s %s after %v; log %s:\n%s",
				m.Label, m.Dir, what, mountTimeout, m.LogPath, Tail(m.LogPath, 10))
		}
	}
}

// DumpAndQuit sends SIGQUIT: the Go runtime writes every goroutine's
// stack to the log and exits with status 2.
func (m *Mount) DumpAndQuit() {
	m.quit.Store(true)
	m.cmd.Process.Signal(syscall.SIGQUIT)
}

// Stop ends the daemon with SIGTERM (SIGKILL if it hangs) and makes sure
// its mount is gone, detaching it with umount -l as a last resort. A
// daemon that had exited on its own is an error. It is safe to call more
// than once and from several goroutines.
func (m *Mount) Stop() error {
	m.stopOnce.Do(func() {
		m.stopErr = m.terminate()
		m.log.Close()
	})
	return m.stopErr
}

func (m *Mount) terminate() error {
	var errs []error
	if m.quit.Load() {
		// Give the goroutine dump time to be written before any SIGTERM.
		select {
		case <-m.exited:
		case <-time.After(exitTimeout):
		}
	}
	switch {
	case !m.Alive() && m.quit.Load():
		errs = append(errs, fmt.Errorf("%s had exited on SIGQUIT (%v), its goroutines in its log %s", m.Label, m.waitErr, m.LogPath))
	case !m.Alive():
		if !m.exitSeen {
			errs = append(errs, fmt.Errorf("%s had exited on its own (%v); log %s", m.Label, m.waitErr, m.LogPath))
		}
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
			if m.waitErr != nil && m.CheckExit {
				errs = append(errs, fmt.Errorf("%s exited with %v after SIGTERM; log %s", m.Label, m.waitErr, m.LogPath))
			}
		case <-time.After(exitTimeout):
			m.cmd.Process.Kill()
			<-m.exited
			errs = append(errs, fmt.Errorf("%s did not exit within %v of SIGTERM and was killed; log %s",
				m.Label, exitTimeout, m.LogPath))
		}
	}
	if IsMounted(m.Dir) {
		out, err := exec.Command("umount", "-l", m.Dir).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s left %s mounted and umount -l failed: %v: %s",
				m.Label, m.Dir, err, bytes.TrimSpace(out)))
		} else {
			errs = append(errs, fmt.Errorf("%s left %s mounted; detached it with umount -l", m.Label, m.Dir))
		}
	}
	return errors.Join(errs...)
}
