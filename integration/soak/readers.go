//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// copyTimeout bounds one copy. A block a read waits for fails it with EIO
// after the mount's --io-timeout (1 minute), and on loopback the largest
// build copies in seconds: a copy still running after this is hung, which
// is a finding in itself.
const copyTimeout = 2 * time.Minute

// killGrace is how long a copy killed at copyTimeout may take to exit. A
// tool killed in a FUSE read exits at once; one that does not sleeps
// uninterruptibly in the kernel (on a page lock a READ the mount never
// answers holds, say), and only that answer or the mount's end frees it.
const killGrace = 20 * time.Second

// ddBlockSizes vary the size of the reads dd makes: the kernel turns them
// into READs of its own sizes, but small ones keep it busy in between.
var ddBlockSizes = []string{"4K", "64K", "1M"}

// outcome is what one copy came to.
type outcome struct {
	t        *target
	how      string // "cp" or "dd bs=..."
	reader   int
	at       time.Time
	took     time.Duration
	got      int64  // bytes read back
	wrong    int64  // bytes that differ from the emulator's, missing and extra ones included
	sumOK    bool   // the sha256 of what was read matches
	err      string // the tool failed or timed out; "" if it succeeded
	firstBad int64  // offset of the first wrong byte, -1 if none
}

func (o outcome) failed() bool { return o.err != "" }

func (o outcome) wrongCopy() bool { return o.err == "" && (o.wrong > 0 || !o.sumOK) }

// tally adds up the outcomes.
type tally struct {
	mu            sync.Mutex
	copies        int64 // completed and verified right
	byHow         map[string]int64
	bytesVerified int64
	wrongCopies   int64
	wrongBytes    int64
	failed        int64
	bad           []outcome // the failed and wrong copies, in order
}

func (t *tally) add(o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case o.failed():
		t.failed++
		t.wrongBytes += o.wrong // bytes it had read wrong before failing
	case o.wrongCopy():
		t.wrongCopies++
		t.wrongBytes += o.wrong
	default:
		t.copies++
		t.bytesVerified += o.got
		if t.byHow == nil {
			t.byHow = map[string]int64{}
		}
		t.byHow[strings.Fields(o.how)[0]]++
	}
	if o.failed() || o.wrongCopy() {
		t.bad = append(t.bad, o)
	}
}

// snapshot returns the copies done and bytes verified so far.
func (t *tally) snapshot() (copies, verified int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.copies, t.bytesVerified
}

// reader copies random files until the soak's end. Even readers use cp
// to a file, odd ones dd to a pipe.
func (s *soak) reader(id int) {
	r := rand.New(rand.NewPCG(s.cfg.seed, uint64(id)+1))
	for time.Now().Before(s.end) && s.stop.Err() == nil {
		t := s.fx.pick(r)
		how := "cp"
		if id%2 == 1 {
			how = "dd bs=" + ddBlockSizes[r.IntN(len(ddBlockSizes))]
		}
		s.gate.RLock()
		o, hung := s.copyOnce(id, t, how)
		s.gate.RUnlock()
		// Copies killed by the cleanup, or because another one hung, say
		// nothing about the mount; one that is hung itself does.
		if s.kill.Err() != nil || s.abort.Err() != nil && !hung {
			return
		}
		s.tally.add(o)
		if o.failed() || o.wrongCopy() {
			runner.Progress("reader %d: %s %s: %s", id, o.how, o.t.path, o.describe())
		}
		if hung {
			s.hang(o)
			return
		}
	}
}

// copyOnce copies t once with the tool how says.
func (s *soak) copyOnce(id int, t *target, how string) (o outcome, hung bool) {
	o = outcome{t: t, how: how, reader: id, at: time.Now(), firstBad: -1}
	ctx, cancel := context.WithTimeout(s.abort, copyTimeout)
	defer cancel()
	return s.guard(ctx, killGrace, o, func(started func(int64)) outcome {
		if bs, ok := strings.CutPrefix(how, "dd bs="); ok {
			return s.copyDD(ctx, o, bs, started)
		}
		return s.copyCP(ctx, o, started)
	})
}

// guard runs copy in a goroutine of its own, so that a tool stuck in the
// kernel cannot stick the reader too: once ctx is done, the copy has
// grace to end, or it is left behind, to be reaped once the mount is
// gone, and reported as hung. copy passes the tool's pid to started.
func (s *soak) guard(ctx context.Context, grace time.Duration, o outcome, copy func(started func(int64)) outcome) (outcome, bool) {
	done := make(chan outcome, 1) // buffered: a copy left behind still ends
	var pid atomic.Int64
	s.cl.Go(func() {}, func() { done <- copy(pid.Store) })
	select {
	case res := <-done:
		return res, false
	case <-ctx.Done():
	}
	select {
	case res := <-done:
		return res, false
	case <-time.After(grace):
	}
	o.took = time.Since(o.at)
	o.err = fmt.Sprintf("hung: killed after %v and still there %v later, %s",
		o.took.Round(time.Second)-grace, grace, kernelState(int(pid.Load())))
	return o, true
}

// copyCP runs cp from the mount into the copies directory and verifies
// the copy. started gets the tool's pid.
func (s *soak) copyCP(ctx context.Context, o outcome, started func(int64)) outcome {
	dst := filepath.Join(s.copies, fmt.Sprintf("reader-%d", o.reader))
	defer os.Remove(dst)
	cmd := tool(ctx, "cp", filepath.Join(s.mnt, o.t.path), dst)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	if err == nil {
		started(int64(cmd.Process.Pid))
		err = cmd.Wait()
	}
	o.took = time.Since(o.at)
	f, openErr := os.Open(dst)
	if openErr == nil {
		// Verified even after a failed cp: wrong bytes before the
		// failure are worse news than the failure.
		verify(&o, f, o.t)
		f.Close()
	}
	o.finish(ctx, err, out.Bytes(), openErr)
	return o
}

// finish records how a copy ended: whole, timed out, the tool failing
// (with what it said), or a copy that could not be opened to verify.
func (o *outcome) finish(ctx context.Context, err error, said []byte, openErr error) {
	if err == nil && openErr == nil {
		o.checkComplete(o.t)
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		o.err = fmt.Sprintf("timed out after %v", copyTimeout)
	case err != nil:
		o.err = fmt.Sprintf("%v: %s", err, bytes.TrimSpace(said))
	case openErr != nil:
		o.err = "open the copy: " + openErr.Error()
	}
}

// copyDD reads the file with dd and verifies its output as it streams.
// started gets the tool's pid.
func (s *soak) copyDD(ctx context.Context, o outcome, bs string, started func(int64)) outcome {
	cmd := tool(ctx, "dd", "if="+filepath.Join(s.mnt, o.t.path), "bs="+bs, "status=none")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		o.err = err.Error()
		return o
	}
	started(int64(cmd.Process.Pid))
	verify(&o, stdout, o.t)
	err = cmd.Wait()
	o.took = time.Since(o.at)
	o.finish(ctx, err, stderr.Bytes(), nil)
	return o
}

// kernelState says where in the kernel a process sleeps: its state and
// the innermost frames of its kernel stack.
func kernelState(pid int) string {
	if pid == 0 {
		return "not started"
	}
	state := "state unknown"
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "State:"); ok {
				state = "state " + strings.TrimSpace(v)
			}
		}
	}
	var frames []string
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid)); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(f[1], "+")
			frames = append(frames, name)
			if len(frames) == 5 {
				break
			}
		}
	}
	if len(frames) == 0 {
		return fmt.Sprintf("pid %d, %s", pid, state)
	}
	return fmt.Sprintf("pid %d, %s in %s", pid, state, strings.Join(frames, " < "))
}

// verify reads r to its end, comparing it with the file's bytes as it
// streams, and fills in o.
func verify(o *outcome, r io.Reader, t *target) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			o.countWrong(off, buf[:n], t.data)
			off += int64(n)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && o.err == "" {
				o.err = "read the copy: " + err.Error()
			}
			break
		}
	}
	o.got = off
	o.sumOK = off == int64(len(t.data)) && [sha256.Size]byte(h.Sum(nil)) == t.sum
}

// checkComplete counts the bytes missing from a copy whose tool said it
// was done as wrong; a failed copy's missing tail is not.
func (o *outcome) checkComplete(t *target) {
	if missing := int64(len(t.data)) - o.got; missing > 0 {
		o.wrong += missing
		if o.firstBad < 0 {
			o.firstBad = o.got
		}
	}
}

// countWrong counts the bytes of chunk, read at off, that differ from
// want, bytes beyond its end included.
func (o *outcome) countWrong(off int64, chunk, want []byte) {
	var ref []byte
	if off < int64(len(want)) {
		ref = want[off:min(off+int64(len(chunk)), int64(len(want)))]
	}
	if len(ref) == len(chunk) && bytes.Equal(chunk, ref) {
		return
	}
	for i := range chunk {
		if i >= len(ref) || chunk[i] != ref[i] {
			o.wrong++
			if o.firstBad < 0 {
				o.firstBad = off + int64(i)
			}
		}
	}
}

// tool runs a command killed with ctx. It gets its own process group, so
// that Ctrl-C in the terminal stops the soak rather than the copies in
// flight, and dies with this process.
func tool(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// describe says what went wrong with a failed or wrong copy.
func (o outcome) describe() string {
	var parts []string
	if o.err != "" {
		parts = append(parts, o.err)
	}
	if o.wrong > 0 || (o.err == "" && !o.sumOK) {
		parts = append(parts, fmt.Sprintf("%d wrong bytes, first at offset %d", o.wrong, o.firstBad))
	}
	parts = append(parts, fmt.Sprintf("read %d of %d bytes in %v", o.got, len(o.t.data), o.took.Round(time.Millisecond)))
	return strings.Join(parts, "; ")
}
