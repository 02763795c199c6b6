//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// Mount settings, passed explicitly so that the soak means the same
// whatever the binary's defaults become. Both caches are smaller than
// the files together, so that neither ever holds everything.
const (
	cacheSize     = "64M"
	diskCacheSize = "96M"
)

// Emulator knobs: every few seconds the token and URL lifetimes are drawn
// anew from [minTTL, maxTTL), so that expiries land at every point of a
// copy rather than in step with it.
const (
	minTTL       = time.Second
	maxTTL       = 2 * time.Second
	ttlEvery     = 3 * time.Second
	dropEvery    = time.Minute      // echo 3 > /proc/sys/vm/drop_caches
	dropQuiet    = 20 * time.Second // no periodic drop this long before the end sample
	sampleEvery  = 10 * time.Second // RSS and goroutines under load
	settleTime   = 3 * time.Second  // quiet before a start or end sample
	settleProbes = 5                // samples of which the smallest counts
	flatMargin   = 0.10             // how much RSS and goroutines may grow
)

// soak is one run: its fixture, its mount and what the readers saw.
type soak struct {
	cfg config
	cl  runner.Cleanup

	// stop ends the readers' loops (first Ctrl-C, a dead mount); abort
	// also kills the copies in flight (a copy hung: the run is over);
	// kill is the cleanup's.
	stop, abort, kill          context.Context
	stopNow, abortNow, killNow context.CancelFunc
	hangOnce                   sync.Once
	hung                       atomic.Bool // a copy hung, and the mount was made to dump its goroutines
	metricsAt                  string      // when s.metrics was scraped

	work, mnt, cacheDir, copies, logs string
	bin                               string
	fx                                *fixture
	m                                 *mountProc

	began, end time.Time
	ended      time.Time // when the last reader was through
	// gate lets the start and end samples wait until no copy is in
	// flight: readers hold it shared while they copy.
	gate  sync.RWMutex
	tally tally

	mu         sync.Mutex
	timeline   []sample // under load, every sampleEvery
	notes      []string // findings that are not a copy's: a dead mount, a failed sample
	caveats    []string // what makes the figures mean less, but is no finding
	drops      int      // page cache drops done
	cannotDrop bool     // a drop failed: no more tries

	first, last sample             // the idle mount after the warm-up and at the end
	metrics     map[string]float64 // the mount's, scraped when metricsAt says
	emuCounts   emulator.Counters
	stopErr     error // from stopping the mount
}

// sample is the mount's RSS and goroutines at one time.
type sample struct {
	at         time.Duration // since the readers started
	rss        int64
	rssAnon    int64 // RssAnon: the heap and stacks, not the binary's pages
	goroutines int64
	heap       int64 // go_memstats_heap_inuse_bytes
	memCache   int64 // appliveryfs_memory_cache_bytes
	copies     int64
	ok         bool
}

// run sets up, soaks and reports; it returns the exit status.
func run(cfg config) int {
	s := &soak{cfg: cfg}
	s.kill, s.killNow = context.WithCancel(context.Background())
	s.abort, s.abortNow = context.WithCancel(s.kill)
	s.stop, s.stopNow = context.WithCancel(s.abort)
	// Deferred so that it also runs while a panic unwinds; a second
	// Ctrl-C runs it from the signal handler.
	defer s.cl.Run()
	unlisten := s.cl.RunOnSecondSignal("soak", "stopping the readers", s.stopNow)
	defer unlisten()

	if err := s.setup(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: setup: %v\n", err)
		if s.cl.Interrupted() {
			return 130
		}
		return 1
	}
	s.soak()
	s.stopErr = s.m.Stop()
	missed := s.report(os.Stdout)
	switch {
	case s.cl.Interrupted():
		return 130
	case missed:
		return 1
	}
	return 0
}

// setup prepares the emulator and the mount. What it starts is stopped
// by s.cl.
func (s *soak) setup() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it mounts FUSE and drops the page cache")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no FUSE device: %w", err)
	}
	for _, tool := range []string{"cp", "dd", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed: %w", tool, err)
		}
	}
	if err := s.makeDirs(); err != nil {
		return err
	}
	bin, err := runner.Binary(s.cfg.bin, s.work) // --bin, or one built from the module
	if err != nil {
		return err
	}
	s.bin = bin
	runner.Progress("generating the builds and starting the emulator")
	fx, err := startFixture(s.cfg.seed)
	if err != nil {
		return fmt.Errorf("start the emulator: %w", err)
	}
	s.fx = fx
	// Last in, first out: the mount stops before the emulator it reads.
	s.cl.Add(fx.emu.Close)
	fx.emu.SetTokenTTL((minTTL + maxTTL) / 2)
	fx.emu.SetURLTTL((minTTL + maxTTL) / 2)
	// Faults from the first request on: the mount's own start meets them too.
	fx.emu.SetFaults(emulator.Faults{APIRate: s.cfg.faultRate, StorageRate: s.cfg.faultRate, Seed: s.cfg.seed})

	runner.Progress("mounting %s", s.mnt)
	emu := fx.emu
	argv := []string{s.bin, "mount", "--api-url", emu.APIURL(), "--download-url", emu.DownloadURL(),
		"--cache-dir", s.cacheDir, "--cache-size", cacheSize, "--disk-cache-size", diskCacheSize,
		"--kernel-cache=false", "--metrics-addr", "127.0.0.1:0", "--log-format", "json", s.mnt}
	m, err := startMount(s.stop, argv, append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token()),
		s.mnt, filepath.Join(s.logs, "mount.log"))
	if err != nil {
		return err
	}
	s.m = m
	s.cl.Add(func() {
		if err := m.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		}
	})
	return nil
}

// makeDirs creates the scratch, copies and log directories. The first
// two are removed at the end unless something is still mounted; the logs
// are kept.
func (s *soak) makeDirs() error {
	var err error
	if s.work, err = s.cl.ScratchDir("soak", "appliveryfs-soak-"); err != nil {
		return err
	}
	s.mnt, s.cacheDir = filepath.Join(s.work, "mnt"), filepath.Join(s.work, "cache")
	for _, d := range []string{s.mnt, s.cacheDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	// The cp readers write gigabytes a minute: in memory, where there is
	// a tmpfs, rather than through the disk the cache and others use.
	shm := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm = "/dev/shm"
	}
	if s.copies, err = os.MkdirTemp(shm, "appliveryfs-soak-copies-"); err != nil {
		return fmt.Errorf("copies directory: %w", err)
	}
	s.cl.Add(func() { os.RemoveAll(s.copies) })
	if s.logs, err = os.MkdirTemp("", "appliveryfs-soak-logs-"); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	return nil
}

// soak runs the readers for the duration, with the start sample after
// the warm-up and the end sample once they are through.
func (s *soak) soak() {
	s.began = time.Now()
	s.end = s.began.Add(s.cfg.duration)
	runner.Progress("%d readers for %v (start sample after %v); Ctrl-C stops early", s.cfg.readers, s.cfg.duration, s.cfg.warmUp)

	var readers, background sync.WaitGroup
	// Registered after the mount: runs before it is stopped.
	s.cl.Add(func() {
		s.killNow()
		readers.Wait()
		background.Wait()
	})
	readers.Add(s.cfg.readers)
	for i := range s.cfg.readers {
		s.cl.Go(readers.Done, func() { s.reader(i) })
	}
	bg, stopBackground := context.WithCancel(s.stop)
	defer stopBackground()
	for _, loop := range []func(context.Context){s.varyTTLs, s.dropCaches, s.sampleLoop} {
		background.Add(1)
		s.cl.Go(background.Done, func() { loop(bg) })
	}

	if sleepUntil(s.stop, s.began.Add(s.cfg.warmUp)) {
		runner.Progress("start sample: waiting for the copies in flight")
		s.first = s.quiescedSample()
		runner.Progress("start: RSS %s, %d goroutines", humanBytes(s.first.rss), s.first.goroutines)
	}
	sleepUntil(s.stop, s.end)
	runner.Progress("waiting for the copies in flight")
	readers.Wait()
	s.ended = time.Now()
	stopBackground()
	background.Wait()
	s.emuCounts = s.fx.emu.Counters()
	if s.kill.Err() != nil || s.hung.Load() {
		return // the mount is gone: no end sample
	}
	s.last = s.settledSample()
	runner.Progress("end: RSS %s, %d goroutines", humanBytes(s.last.rss), s.last.goroutines)
	m, err := scrape(s.m.metricsURL)
	if err != nil {
		s.note("end: %v", err)
	}
	s.mu.Lock()
	s.metrics, s.metricsAt = m, "at the end"
	s.mu.Unlock()
}

// hang ends the run after a copy hung: what the mount does then is what
// a fix needs, so its metrics are kept and SIGQUIT makes it write every
// goroutine's stack to its log (and exit, which also frees the tools
// stuck on it). The other copies in flight are killed and not counted.
func (s *soak) hang(o outcome) {
	s.hangOnce.Do(func() {
		s.hung.Store(true)
		when := clock(time.Since(s.began))
		if m, err := scrape(s.m.metricsURL); err == nil {
			s.mu.Lock()
			s.metrics, s.metricsAt = m, "when the copy hung, at "+when
			s.mu.Unlock()
		}
		s.note("%s: reader %d: %s %s hung; SIGQUIT to the mount for its goroutines (in %s), and the run stops",
			when, o.reader, o.how, o.t.path, s.m.LogPath)
		s.m.DumpAndQuit()
		s.abortNow()
	})
}

// varyTTLs draws new token and URL lifetimes every ttlEvery.
func (s *soak) varyTTLs(ctx context.Context) {
	r := rand.New(rand.NewPCG(s.cfg.seed, 0x74746c))
	draw := func() time.Duration { return minTTL + time.Duration(r.Int64N(int64(maxTTL-minTTL))) }
	for sleepFor(ctx, ttlEvery) {
		s.fx.emu.SetTokenTTL(draw())
		s.fx.emu.SetURLTTL(draw())
	}
}

// dropCaches drops the page cache every dropEvery: the mount keeps no
// file pages across opens (--kernel-cache=false), and a drop also takes
// the pages of files open meanwhile and of the disk cache's own files.
// None comes in the last dropQuiet, so that the end sample, like the
// start one, follows no drop.
func (s *soak) dropCaches(ctx context.Context) {
	for sleepFor(ctx, dropEvery) {
		if time.Until(s.end) < dropQuiet {
			return
		}
		if !s.dropPageCache() {
			return
		}
	}
}

// dropPageCache drops the page cache, dentries and inodes; it reports
// false, noted once, if it cannot.
func (s *soak) dropPageCache() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cannotDrop {
		return false
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		s.cannotDrop = true
		s.caveats = append(s.caveats, fmt.Sprintf("drop_caches: %v", err))
		runner.Progress("drop_caches: %v", err)
		return false
	}
	s.drops++
	return true
}

// sampleLoop records RSS and goroutines under load, and stops the soak
// if the mount dies: every copy after that would fail for the one cause.
func (s *soak) sampleLoop(ctx context.Context) {
	for sleepFor(ctx, sampleEvery) {
		if !s.m.Alive() && !s.hung.Load() {
			s.note("the mount exited %v into the soak (%v); log %s:\n%s",
				time.Since(s.began).Round(time.Second), s.m.WaitErr(), s.m.LogPath, runner.Tail(s.m.LogPath, 20))
			s.stopNow()
			return
		}
		// Not while the readers are paused for the start sample: that is no
		// figure under load.
		if !s.gate.TryRLock() {
			continue
		}
		smp, err := s.sample()
		s.gate.RUnlock()
		if err != nil {
			s.note("sample at %v: %v", clock(smp.at), err)
			continue
		}
		s.mu.Lock()
		s.timeline = append(s.timeline, smp)
		s.mu.Unlock()
	}
}

// quiescedSample pauses the readers once their copies in flight are
// done, and samples the idle mount, as the end sample finds it.
func (s *soak) quiescedSample() sample {
	s.gate.Lock()
	defer s.gate.Unlock()
	return s.settledSample()
}

// settledSample waits for prefetches and disk writes to finish and takes
// the smallest of a few samples, so that a goroutine or an allocation
// passing through does not count as growth.
func (s *soak) settledSample() sample {
	sleepFor(s.kill, settleTime)
	var best sample
	var lastErr error
	for i := range settleProbes {
		if i > 0 && !sleepFor(s.kill, 500*time.Millisecond) {
			break
		}
		smp, err := s.sample()
		if err != nil {
			lastErr = err
			continue
		}
		if !best.ok {
			best = smp
			continue
		}
		best.rss = min(best.rss, smp.rss)
		best.rssAnon = min(best.rssAnon, smp.rssAnon)
		best.memCache = min(best.memCache, smp.memCache)
		best.goroutines = min(best.goroutines, smp.goroutines)
		best.heap = min(best.heap, smp.heap)
	}
	if !best.ok && lastErr != nil {
		s.note("idle sample at %v: %v", clock(time.Since(s.began)), lastErr)
	}
	return best
}

// sample reads the mount's RSS and scrapes its metrics.
func (s *soak) sample() (sample, error) {
	smp := sample{at: time.Since(s.began)}
	smp.copies, _ = s.tally.snapshot()
	rss, err := runner.ProcStatus(s.m.Pid(), "VmRSS")
	if err == nil {
		smp.rssAnon, err = runner.ProcStatus(s.m.Pid(), "RssAnon")
	}
	if err != nil {
		return smp, err
	}
	m, err := scrape(s.m.metricsURL)
	if err != nil {
		return smp, err
	}
	g, ok := m["go_goroutines"]
	if !ok {
		return smp, errors.New("no go_goroutines in the metrics")
	}
	smp.rss, smp.goroutines, smp.ok = rss, int64(g), true
	smp.heap = int64(m["go_memstats_heap_inuse_bytes"])
	smp.memCache = int64(m["appliveryfs_memory_cache_bytes"])
	return smp, nil
}

// note records a finding that is no copy's.
func (s *soak) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	runner.Progress("%s", msg)
	s.mu.Lock()
	s.notes = append(s.notes, msg)
	s.mu.Unlock()
}

// sleepFor waits d and reports true, or false as soon as ctx is done.
func sleepFor(ctx context.Context, d time.Duration) bool {
	return emulator.Sleep(ctx, d, nil)
}

// sleepUntil waits until t and reports true, or false as soon as ctx is
// done.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return sleepFor(ctx, time.Until(t)) && ctx.Err() == nil
}
