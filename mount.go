package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/fs"
)

func runMount(fl *pflag.FlagSet, args []string, _, stderr io.Writer) error {
	conn, mf := newConnFlags(fl, stderr), newMountFlags(fl)
	mf.registerBackground(fl)
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageErr("mount takes one MOUNTPOINT")
	}
	if mf.uid < 0 || mf.gid < 0 {
		return usageErr("--uid and --gid must not be negative")
	}
	if _, err := mf.cacheConfig(); err != nil {
		return err
	}
	dir, err := filepath.Abs(fl.Arg(0))
	if err != nil {
		return err
	}
	bg := backgroundChild()
	if mf.daemon && bg == nil {
		// Fail here, in the foreground, on what needs no network.
		if _, err := conn.client(); err != nil {
			return err
		}
		if _, err := mf.log.logger(io.Discard); err != nil {
			return err
		}
		if err := fs.CanMount(mf.allowOther); err != nil {
			return err
		}
		if err := fs.CheckMountpoint(dir, mf.allowNonEmpty); err != nil {
			return err
		}
		return startBackground(args, stderr)
	}
	if bg != nil {
		// Paths given relative to where the command ran still mean that,
		// though the background process leaves it (see below).
		for _, p := range []*string{&conn.tokenFile, &mf.cacheDir, &mf.logFile, &mf.cpuProfile} {
			if *p != "" {
				if *p, err = filepath.Abs(*p); err != nil {
					return bg.fail(err)
				}
			}
		}
		// Holding the directory would keep its filesystem busy.
		if err := os.Chdir("/"); err != nil {
			return bg.fail(err)
		}
		stderr = io.Discard
	}
	if mf.logFile != "" {
		f, err := os.OpenFile(mf.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return bg.fail(fmt.Errorf("open log file: %w", err))
		}
		defer f.Close()
		stderr = f
	}
	logger, err := mf.log.logger(stderr)
	if err != nil {
		return bg.fail(err)
	}
	client, err := conn.clientLogging(logger)
	if err != nil {
		return bg.fail(err)
	}
	err = serve(client, dir, mf, logger, func(string) { bg.ready() })
	return bg.fail(err)
}

// serve checks what it can before mounting, mounts, and serves until
// SIGINT, SIGTERM or SIGHUP, or until unmounted from outside. ready, if
// set, is called once the mount serves requests.
func serve(client *api.Client, dir string, mf *mountFlags, logger *slog.Logger, ready func(dir string)) error {
	// What needs no network first: a refused mountpoint costs no API call.
	if err := fs.CanMount(mf.allowOther); err != nil {
		return err
	}
	if err := fs.CheckMountpoint(dir, mf.allowNonEmpty); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	orgs, err := client.Organizations(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("check token: %w", err)
	}
	for _, want := range mf.orgs {
		found := false
		for _, o := range orgs {
			found = found || o.ID == want || o.Slug == want
		}
		if !found {
			return fmt.Errorf("--org %s: no such organization visible to this token", want)
		}
	}

	store, c, err := mf.openCaches(logger)
	if err != nil {
		return err
	}
	defer store.Close()
	defer c.Close() // first: it waits for writes to the store
	o := &observed{dir: dir, started: time.Now(), blockSize: int64(mf.blockSize), client: client, cache: c, store: store}

	fsys := fs.New(fs.Config{Client: client, Cache: c, Sizes: store, Orgs: mf.orgs,
		UID: uint32(mf.uid), GID: uint32(mf.gid), DirTTL: mf.dirTTL, IOTimeout: mf.ioTimeout, Log: logger,
		DropPageCache: !mf.kernelCache, CopyReads: !mf.zeroCopy, Status: func() []byte { return o.summary() }})
	o.fsys = fsys
	if mf.cpuProfile != "" {
		stop, err := startCPUProfile(mf.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if mf.metricsAddr != "" {
		stop, err := serveMetrics(mf.metricsAddr, o, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Signals are caught before mounting, so that none arriving meanwhile
	// kills the process and leaves a dead mount behind.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	srv, err := fs.Mount(dir, fsys, fs.MountOptions{FsName: mf.fsName, AllowOther: mf.allowOther,
		AllowNonEmpty: mf.allowNonEmpty, ReadAheadKB: mf.readAheadKB, MaxBackground: mf.maxBackground(), Debug: mf.debug})
	if err != nil {
		return err
	}
	logger.Info("mounted", "dir", dir, "cache_dir", mf.cacheDir)

	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	if ready != nil {
		ready(dir)
	}
	notifySystemd("READY=1\nSTATUS=Mounted on " + dir)
	var s os.Signal
	for s == nil {
		select {
		case <-done: // unmounted from outside (umount, fusermount3 -u)
			logger.Info("unmounted from outside", "dir", dir, "status", string(o.summary()))
			return nil
		case s = <-sigs:
			if s == syscall.SIGUSR1 {
				logger.Info("status", "status", string(o.summary()))
				s = nil
			}
		}
	}
	notifySystemd("STOPPING=1")
	logger.Info("unmounting", "dir", dir, "signal", s.String())
	if err := fs.Unmount(srv, dir); err != nil {
		logger.Error("unmount failed", "dir", dir, "err", err.Error())
	}
	// A busy mount was detached lazily: gone from the tree, but the files
	// still open keep it served until they close. Reads under way get
	// --stop-timeout to finish; a second signal stops waiting.
	timer := time.NewTimer(mf.stopTimeout)
	defer timer.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case s := <-sigs:
			if s != syscall.SIGUSR1 {
				logger.Info("exiting now, files still open on the detached mount", "signal", s.String())
				waiting = false
			}
		case <-timer.C:
			logger.Info("exiting, files still open on the detached mount", "after", mf.stopTimeout.String())
			waiting = false
		}
	}
	logger.Info("unmounted", "dir", dir, "status", string(o.summary()))
	return nil
}

// startCPUProfile profiles the process into path until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
