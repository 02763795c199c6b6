//go:build linux

// Command soak runs one appliveryfs mount for a long time under expiring
// tokens and URLs and injected faults, with readers copying and verifying
// builds all along, and checks that no byte is ever wrong, no copy fails,
// and the mount's memory and goroutines stay flat.
//
//	go run ./integration/soak [--duration 10m] [--bin PATH] [--readers 8] [--fault-rate 0.02] [--seed 1]
//
// The Applivery emulator runs in this process on 127.0.0.1, serving the
// sample data plus a few larger builds, with download-token and URL
// lifetimes drawn from 1-2 s and a share of API and storage requests
// failing (503s and bodies cut short). The mount is a subprocess of the
// appliveryfs binary, so that its RSS is its own; its metrics give the
// mints, retries, errors and goroutines. Half the readers cp files out of
// the mount, the others dd them into a pipe; every copy is compared with
// the emulator's bytes. The mount is unmounted at the end, also on error,
// panic or Ctrl-C (once: stop and report; twice: quit at once). It needs
// root (FUSE mount, drop_caches) and /dev/fuse.
package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// config is what the command line asks for.
type config struct {
	duration  time.Duration
	warmUp    time.Duration
	bin       string
	readers   int
	faultRate float64
	seed      uint64
}

func main() {
	runner.Main("soak", parseFlags, run)
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fl := flag.NewFlagSet("soak", flag.ContinueOnError)
	fl.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long the readers run, warm-up included")
	fl.DurationVar(&cfg.warmUp, "warm-up", 20*time.Second, "time before the start sample of RSS and goroutines (at most a third of --duration)")
	fl.StringVar(&cfg.bin, "bin", "", "appliveryfs binary to mount with (default: build one from the module)")
	fl.IntVar(&cfg.readers, "readers", 8, "concurrent readers")
	fl.Float64Var(&cfg.faultRate, "fault-rate", 0.02, "share of API and of storage requests that fail")
	fl.Uint64Var(&cfg.seed, "seed", 1, "seed of the faults, the readers' choices and the big builds' bytes")
	if err := fl.Parse(args); err != nil {
		return cfg, err
	}
	if fl.NArg() != 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	switch {
	case cfg.duration < 30*time.Second:
		return cfg, fmt.Errorf("--duration %v is too short: want at least 30s", cfg.duration)
	case cfg.readers < 1:
		return cfg, errors.New("--readers must be at least 1")
	case cfg.faultRate < 0 || cfg.faultRate >= 1:
		return cfg, fmt.Errorf("--fault-rate %v: want at least 0 and below 1", cfg.faultRate)
	}
	cfg.warmUp = min(max(cfg.warmUp, 0), cfg.duration/3)
	return cfg, nil
}
