package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// readyFDEnv is set only in the environment of the process that --daemon
// starts: the number of the descriptor on which it reports whether it
// mounted. Go cannot fork, so the background process is this binary
// started again; the service token reaches it through the environment
// or the --token-file it names, never its command line, which ps shows
// to every user.
const readyFDEnv = "APPLIVERYFS_READY_FD"

// startBackground runs `mount args` again as a background process in a
// session of its own, and returns once it reports: nil when the mount
// serves requests, else the reason it did not mount.
func startBackground(args []string, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--daemon: find this program: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("--daemon: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{"mount"}, args...)...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w} // descriptor 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Standard streams stay nil: /dev/null. The log goes to --log-file.
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("--daemon: start the background process: %w", err)
	}
	// Not waited for: it outlives this process. Release lets it go.
	defer cmd.Process.Release()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSuffix(line, "\n")
	switch {
	case line == "ok":
		return nil
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	}
	return errors.New("the background process exited before it mounted (--log-file FILE keeps its log)")
}

// background is the reporting end of a process that --daemon started;
// nil in a process that was not.
type background struct {
	report *os.File
}

// backgroundChild returns the reporter of this process if --daemon
// started it.
func backgroundChild() *background {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	os.Unsetenv(readyFDEnv) // not for anything this process starts
	return &background{report: os.NewFile(uintptr(fd), "ready")}
}

// ready tells the waiting command that the mount serves requests.
func (b *background) ready() {
	if b == nil {
		return
	}
	fmt.Fprintln(b.report, "ok")
	b.report.Close()
	b.report = nil
}

// fail tells the waiting command why this process did not mount, if it
// had not reported yet, and returns err.
func (b *background) fail(err error) error {
	if b == nil || b.report == nil {
		return err
	}
	msg := "the background process stopped before it mounted"
	if err != nil {
		msg = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	fmt.Fprintf(b.report, "error: %s\n", msg)
	b.report.Close()
	b.report = nil
	return err
}
