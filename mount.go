package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/cache/disk"
	"github.com/appliveryfs/appliveryfs/fs"
)

func runMount(fl *pflag.FlagSet, args []string, _, stderr io.Writer) error {
	conn, mf := newConnFlags(fl), newMountFlags(fl)
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageErr("mount takes one MOUNTPOINT")
	}
	client, err := conn.client()
	if err != nil {
		return err
	}
	return serve(client, fl.Arg(0), mf, stderr, nil)
}

// serve checks the token, mounts, and serves until SIGINT or SIGTERM.
// ready, if set, is called once the mount is up.
func serve(client *api.Client, mountpoint string, mf *mountFlags, stderr io.Writer, ready func(dir string)) error {
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if mf.uid < 0 || mf.gid < 0 {
		return usageErr("--uid and --gid must not be negative")
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

	store, err := disk.Open(mf.cacheDir, int64(mf.diskSize))
	if err != nil {
		return fmt.Errorf("open cache dir: %w", err)
	}
	defer store.Close()
	c, err := cache.New(cache.Config{BlockSize: int64(mf.blockSize), MemoryBytes: int64(mf.cacheSize),
		Store: store, IOTimeout: mf.ioTimeout, MaxAhead: mf.prefetch})
	if err != nil {
		return usageErr("%v", err)
	}
	defer c.Close()
	// Evicted blocks are garbage; a soft limit makes the runtime collect
	// them before the process outgrows the budget it was given.
	debug.SetMemoryLimit(int64(mf.cacheSize) + 48<<20)

	logger := log.New(stderr, "", log.LstdFlags)
	fsys := fs.New(fs.Config{Client: client, Cache: c, Sizes: store, Orgs: mf.orgs,
		UID: uint32(mf.uid), GID: uint32(mf.gid), DirTTL: mf.dirTTL, IOTimeout: mf.ioTimeout, Log: logger,
		DropPageCache: !mf.kernelCache})
	// Signals are caught before mounting, so that none arriving meanwhile
	// kills the process and leaves a dead mount behind.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	srv, err := fs.Mount(dir, fsys, fs.MountOptions{AllowOther: mf.allowOther, ReadAheadKB: mf.readAheadKB,
		MaxBackground: mf.maxBG, Debug: mf.debug})
	if err != nil {
		return err
	}
	logger.Printf("appliveryfs: mounted on %s", dir)

	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	if ready != nil {
		ready(dir)
	}
	select {
	case <-done: // unmounted from outside (umount)
		logger.Printf("appliveryfs: %s was unmounted", dir)
		return nil
	case s := <-sigs:
		logger.Printf("appliveryfs: %v: unmounting %s", s, dir)
	}
	if err := fs.Unmount(srv, dir); err != nil {
		return err
	}
	// A busy mount was detached lazily: it is gone from the tree, but files
	// still open keep it served until they close. A second signal stops
	// waiting for them.
	select {
	case <-done:
	case s := <-sigs:
		logger.Printf("appliveryfs: %v: exiting while files are still open on the detached mount", s)
		return nil
	}
	st := c.Stats()
	logger.Printf("appliveryfs: unmounted; fetched %d blocks (%s), %d from disk cache, %d memory hits",
		st.Fetches, humanBytes(st.FetchedBytes), st.DiskHits, st.MemHits)
	return nil
}
