//go:build linux

// Command bench measures appliveryfs through real mounts, each figure next
// to a baseline measured in the same run: curl and aria2c (16 connections)
// for cold downloads, on the same signed URL as the mount, token mint and
// redirect included; a local copy of the file for cached reads; a direct
// HTTP client for the time to first byte and, when it is installed,
// rclone mount serving the same bytes. Every throughput stands beside the
// CPU seconds per GiB its process spent. After the figures, the levers
// section measures each read-path tuning flag of the mount, and a few Go
// runtime settings of its environment, at the default and at an
// alternative.
//
//	go run ./integration/bench [--sizes 64M,256M,1G] [--size 256M] [--entries 2000] [--runs 3]
//	    [--bin PATH] [--keep-going] [--rclone-modes off,full] [--levers=false | --only figures | --only levers]
//	    [--profile DIR]
//
// The cold copies of figures 1 and 2, and their baselines, are measured
// at every size of --sizes and at --size; every other figure and the
// levers read the --size file. The defaults are meant to keep `make
// bench` within about 10 minutes on 2 cores; a --size of 1G would not,
// as under the caps of figure 2 the single-connection baselines (curl,
// rclone) take half a minute for each read of 1 GiB.
//
// The Applivery emulator runs in this process on 127.0.0.1; each mount is
// a subprocess of the appliveryfs binary, so that its peak RSS and CPU time
// can be read and its log kept. Every mount is unmounted at the end, also
// on error, panic or Ctrl-C. It needs root (FUSE mounts, drop_caches) and
// /dev/fuse; without aria2c on PATH its rows are skipped with a note.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// config is what the command line asks for.
type config struct {
	size        int64   // of the .ipa every figure but the cold copies reads
	sizes       []int64 // of the cold copies besides size, ascending
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
	cfg := config{size: defaultSize, sizes: slices.Clone(defaultSizes)}
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.Var((*sizeFlag)(&cfg.size), "size", "`size` of the .ipa read by every figure but the cold copies, and by the levers, e.g. 256M or 1G")
	fl.Var((*sizeList)(&cfg.sizes), "sizes", "comma-separated `sizes` of the cold copies of figures 1 and 2; --size's is measured too")
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
	for _, n := range append([]int64{cfg.size}, cfg.sizes...) {
		if n < minSize {
			return cfg, fmt.Errorf("size %d is too small: want at least 1M", n)
		}
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

// Default sizes: typical builds for the cold copies, and one in the middle
// for the rest (see the package comment).
const (
	defaultSize = 256 << 20
	minSize     = 1 << 20
)

var defaultSizes = []int64{64 << 20, 256 << 20, 1 << 30}

// sizeFlag is a byte count such as 1073741824, 256M or 1GiB.
type sizeFlag int64

func (s *sizeFlag) String() string { return shortSize(int64(*s)) }

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

// shortSize writes n the way sizeFlag reads it, e.g. 64M or 1G.
func shortSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeList is a comma-separated list of sizes such as 64M,256M,1G, kept
// ascending and without repeats.
type sizeList []int64

func (l *sizeList) String() string {
	parts := make([]string, len(*l))
	for i, n := range *l {
		parts[i] = shortSize(n)
	}
	return strings.Join(parts, ",")
}

func (l *sizeList) Set(v string) error {
	var sizes []int64
	for _, part := range strings.Split(v, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var n sizeFlag
		if err := n.Set(part); err != nil {
			return err
		}
		sizes = append(sizes, int64(n))
	}
	slices.Sort(sizes)
	*l = slices.Compact(sizes)
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
