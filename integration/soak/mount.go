//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/appliveryfs/appliveryfs/fs"
)

const (
	mountTimeout = 30 * time.Second // from start until mounted and serving metrics
	exitTimeout  = 20 * time.Second // from SIGTERM until the process is gone
)

// mountProc is the mount daemon, a subprocess of the appliveryfs binary,
// so that its RSS is its own and its log is kept.
type mountProc struct {
	dir, logPath string
	metricsURL   string // from the "serving metrics" log record

	cmd      *exec.Cmd
	log      *os.File
	exited   chan struct{}
	waitErr  error       // valid once exited is closed
	quit     atomic.Bool // dumpAndQuit asked it to exit
	stopOnce sync.Once
	stopErr  error
}

// startMount runs argv, which must mount dir with --log-format json and
// --metrics-addr, and waits until the mount is up and its metrics are
// served. On failure nothing is left running or mounted.
func startMount(ctx context.Context, argv, env []string, dir, logPath string) (*mountProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("mount log: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.Dir = os.TempDir() // never a directory on the mount
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// If this process dies without cleaning up, the daemon gets
		// SIGTERM and unmounts by itself.
		Pdeathsig: syscall.SIGTERM,
		// Its own process group: Ctrl-C in the terminal must not stop the
		// mount under the readers; cleanup stops it after them.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	m := &mountProc{dir: dir, logPath: logPath, cmd: cmd, log: logf, exited: make(chan struct{})}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	if err := m.waitReady(ctx); err != nil {
		return nil, errors.Join(err, m.stop())
	}
	return m, nil
}

func (m *mountProc) pid() int { return m.cmd.Process.Pid }

// waitReady polls /proc/mounts and the log until the mountpoint shows up
// and the metrics address is logged.
func (m *mountProc) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(mountTimeout)
	for {
		if m.metricsURL == "" {
			if rec, ok := findRecord(m.logPath, "serving metrics"); ok {
				m.metricsURL, _ = rec["addr"].(string)
			}
		}
		if m.metricsURL != "" && isMounted(m.dir) {
			return nil
		}
		select {
		case <-m.exited:
			return fmt.Errorf("the mount exited before serving (%v); log %s:\n%s", m.waitErr, m.logPath, tail(m.logPath, 10))
		case <-ctx.Done():
			return errors.New("interrupted while mounting")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not mounted with metrics after %v; log %s:\n%s", m.dir, mountTimeout, m.logPath, tail(m.logPath, 10))
		}
	}
}

// dumpAndQuit sends SIGQUIT: the Go runtime writes every goroutine's
// stack to the log and exits with status 2.
func (m *mountProc) dumpAndQuit() {
	m.quit.Store(true)
	m.cmd.Process.Signal(syscall.SIGQUIT)
}

// alive reports whether the daemon is still running.
func (m *mountProc) alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// stop ends the daemon with SIGTERM (SIGKILL if it hangs) and makes sure
// its mount is gone, detaching it with umount -l as a last resort. A
// daemon that exits non-zero, or had exited on its own, is an error. It is
// safe to call more than once.
func (m *mountProc) stop() error {
	m.stopOnce.Do(func() {
		m.stopErr = m.terminate()
		m.log.Close()
	})
	return m.stopErr
}

func (m *mountProc) terminate() error {
	var errs []error
	if m.quit.Load() {
		// Give the goroutine dump time to be written before any SIGTERM.
		select {
		case <-m.exited:
		case <-time.After(exitTimeout):
		}
	}
	switch {
	case !m.alive() && m.quit.Load():
		errs = append(errs, fmt.Errorf("the mount had exited on SIGQUIT (%v), its goroutines in its log %s", m.waitErr, m.logPath))
	case !m.alive():
		errs = append(errs, fmt.Errorf("the mount had exited on its own (%v); log %s", m.waitErr, m.logPath))
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
			if m.waitErr != nil {
				errs = append(errs, fmt.Errorf("the mount exited with %v after SIGTERM; log %s", m.waitErr, m.logPath))
			}
		case <-time.After(exitTimeout):
			m.cmd.Process.Kill()
			<-m.exited
			errs = append(errs, fmt.Errorf("the mount did not exit within %v of SIGTERM and was killed; log %s", exitTimeout, m.logPath))
		}
	}
	if isMounted(m.dir) {
		out, err := exec.Command("umount", "-l", m.dir).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s left mounted and umount -l failed: %v: %s", m.dir, err, bytes.TrimSpace(out)))
		} else {
			errs = append(errs, fmt.Errorf("%s left mounted; detached it with umount -l", m.dir))
		}
	}
	return errors.Join(errs...)
}

func isMounted(dir string) bool {
	m, _ := fs.IsMounted(dir)
	return m
}

// scrapeClient is short-timed: a mount too busy to answer its metrics
// within seconds is itself a finding.
var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrape reads the Prometheus text format into a map from the series
// (name and labels, as written) to its value.
func scrape(url string) (map[string]float64, error) {
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("scrape metrics: line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("scrape metrics: line %q", line)
		}
		out[line[:i]] = v
	}
	return out, nil
}

// procStatus returns a size field of /proc/PID/status, such as VmRSS,
// in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", field, rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// logRecord is one line of a --log-format json log.
type logRecord map[string]any

func (r logRecord) str(key string) string {
	s, _ := r[key].(string)
	return s
}

// rawKey holds a record's line as the daemon wrote it.
const rawKey = "\x00raw"

// readRecords decodes a JSON log; lines that are not JSON objects (a
// panic's trace, say) come back as records of level "RAW" with the line
// as "msg", so that nothing the daemon wrote is lost.
func readRecords(path string) []logRecord {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []logRecord
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec logRecord
		if json.Unmarshal([]byte(line), &rec) != nil || rec == nil {
			rec = logRecord{"level": "RAW", "msg": line}
		}
		rec[rawKey] = line
		out = append(out, rec)
	}
	return out
}

func findRecord(path, msg string) (logRecord, bool) {
	for _, rec := range readRecords(path) {
		if rec.str("msg") == msg {
			return rec, true
		}
	}
	return nil, false
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
