//go:build linux

// Package runner is the process plumbing of the bench and the soak: a
// cleanup registry that also runs on signals and panics, the mount
// subprocess, /proc readings, log tails.
package runner

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Main is a command's main: it parses the arguments with parse and exits
// with run's status; with 0 for -help and with 2, after a message that
// prog starts, for arguments parse refuses.
func Main[C any](prog string, parse func(args []string) (C, error), run func(C) int) {
	cfg, err := parse(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(2)
	}
	os.Exit(run(cfg))
}

// Progress logs what a command is doing to stderr; reports go to stdout.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Binary returns the appliveryfs binary to mount with: bin, made
// absolute, when it is set (from --bin), or else one built from the
// module root into dir.
func Binary(bin, dir string) (string, error) {
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--bin: %w", err)
		}
		return abs, nil
	}
	// In the working directory: go run ./integration/... runs from the
	// module root.
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the module root: run from inside the module or pass --bin (go env GOMOD: %q, %v)", gomod, err)
	}
	bin = filepath.Join(dir, "appliveryfs")
	Progress("building %s", bin)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build appliveryfs: %v\n%s", err, out)
	}
	return bin, nil
}
