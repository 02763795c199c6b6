//go:build linux

// Command bench measures appliveryfs through real mounts, each figure next
// to a baseline measured in the same run: curl for cold downloads, a local
// copy of the file for cached reads, a direct HTTP client for the time to
// first byte and, when it is installed, rclone mount serving the same bytes.
// After the figures, the levers section measures each read-path tuning
// flag of the mount at its default and at an alternative.
//
//	go run ./integration/bench [--size 1G] [--entries 2000] [--runs 3] [--bin PATH] [--keep-going]
//	    [--levers=false | --only figures | --only levers] [--profile DIR]
//
// The Applivery emulator runs in this process on 127.0.0.1; each mount is
// a subprocess of the appliveryfs binary, so that its peak RSS can be read
// and its log kept. Every mount is unmounted at the end, also on error,
// panic or Ctrl-C. It needs root (FUSE mounts, drop_caches) and /dev/fuse.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// config is what the command line asks for.
type config struct {
	size        int64
	entries     int
	runs        int
	bin         string
	keepGoing   bool
	rcloneModes []string
	profileDir  string // where each mount of ours writes its CPU profile; empty for none
	figures     bool   // measure the figures against their baselines
	levers      bool   // measure the tuning levers
}

func main() {
	runner.Main("bench", parseFlags, run)
}

func parseFlags(args []string) (config, error) {
	cfg := config{size: 1 << 30}
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.Var((*sizeFlag)(&cfg.size), "size", "size of the benchmark .ipa, e.g. 256M or 1G")
	fl.IntVar(&cfg.entries, "entries", 2000, "number of files in the .ipa")
	fl.IntVar(&cfg.runs, "runs", 3, "runs per figure; the table shows medians")
	fl.StringVar(&cfg.bin, "bin", "", "appliveryfs binary to mount with (default: build one from the module)")
	fl.BoolVar(&cfg.keepGoing, "keep-going", false, "after a failed figure, go on with the others")
	modes := fl.String("rclone-modes", "off,full", "rclone --vfs-cache-mode values to compare with; empty to skip rclone")
	fl.StringVar(&cfg.profileDir, "profile", "", "write a Go CPU profile of each appliveryfs mount into `DIR` (go tool pprof -top FILE)")
	fl.BoolVar(&cfg.levers, "levers", true, "after the figures, measure each tuning lever of the mount")
	only := fl.String("only", "", `"figures" or "levers": measure only that section`)
	if err := fl.Parse(args); err != nil {
		return cfg, err
	}
	if fl.NArg() != 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if cfg.size < 1<<20 {
		return cfg, fmt.Errorf("--size %d is too small: want at least 1M", cfg.size)
	}
	if cfg.runs < 1 || cfg.entries < 1 {
		return cfg, errors.New("--runs and --entries must be at least 1")
	}
	switch *only {
	case "":
		cfg.figures = true
	case "figures":
		cfg.figures, cfg.levers = true, false
	case "levers":
		cfg.levers = true
	default:
		return cfg, fmt.Errorf("--only %q: want figures or levers", *only)
	}
	for _, m := range strings.Split(*modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.rcloneModes = append(cfg.rcloneModes, m)
		}
	}
	return cfg, nil
}

// sizeFlag is a byte count such as 1073741824, 256M or 1GiB.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	t := strings.ToUpper(strings.TrimSpace(v))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	shift := 0
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			shift = 10 * (i + 1)
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return fmt.Errorf("bad size %q: want e.g. 1048576, 256M or 1G", v)
	}
	*s = sizeFlag(n << shift)
	return nil
}

// run sets up, measures and reports; it returns the exit status.
func run(cfg config) int {
	b := &bench{cfg: cfg, res: newResults()}
	// Deferred so that it also runs while a panic unwinds; Ctrl-C runs it
	// from the signal handler.
	defer b.cleanup.Run()
	stopSignals := b.cleanup.RunOnSignal("bench")
	defer stopSignals()

	if err := b.setup(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: setup: %v\n", err)
		return 1
	}
	var failures []error
	if cfg.figures {
		failures = b.runFigures()
	}
	if cfg.levers && (len(failures) == 0 || cfg.keepGoing) && !b.cleanup.Interrupted() {
		failures = append(failures, b.runLevers()...)
	}
	if b.cleanup.Interrupted() {
		b.cleanup.Run() // waits for the signal handler's cleanup
		return 130
	}
	b.report(os.Stdout, failures)
	if len(failures) > 0 {
		return 1
	}
	return 0
}
