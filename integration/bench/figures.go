//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// The caps of figure 2, also used for the time to first byte.
const (
	cappedBandwidth = 32 << 20 // bytes per second per storage connection
	cappedLatency   = 20 * time.Millisecond
)

// Metric keys of the figures other than 1 and 2 (see coldFigure.key).
// Throughputs are in MiB/s, times in ms, sizes in bytes, CPU in seconds
// per GiB read.
const (
	keyRemountCPU     = "remount.cpu"
	keyWarmOurs       = "warm.appliveryfs"
	keyWarmCPU        = "warm.cpu"
	keyWarmLocal      = "warm.local"
	keyRemountOurs    = "remount.appliveryfs"
	keyRemountLocal   = "remount.local-after-drop-caches"
	keyRemountBytes   = "remount.storage-bytes"
	keyRemountTokens  = "remount.tokens"
	keyUnzipOurs      = "unzip.appliveryfs"
	keyUnzipLocal     = "unzip.local-after-drop-caches"
	keyUnzipBytes     = "unzip.storage-bytes"
	keyTTFBOurs       = "ttfb.appliveryfs"
	keyTTFBBase       = "ttfb.direct"
	keyTTFBCappedOurs = "ttfb-capped.appliveryfs"
	keyTTFBCappedBase = "ttfb-capped.direct"
)

// coldFigure is figure 1 (no caps) or 2 (capped): a cold copy from a
// fresh mount at each size, and the baselines' downloads under the same
// caps.
type coldFigure struct {
	num       string // "1" or "2"
	key       string // starts its metric keys
	caps      string // in the table
	bandwidth int64
	latency   time.Duration
}

var (
	figCold   = coldFigure{"1", "cold", "no caps", 0, 0}
	figCapped = coldFigure{"2", "capped", "32 MiB/s/conn + 20 ms", cappedBandwidth, cappedLatency}
)

// key names a metric of fig on f, e.g. "cold.appliveryfs" or
// "capped.curl.cpu@64M". The --size file's metrics carry no size, as they
// did when it was the only one.
func (b *bench) key(fig coldFigure, what string, f *ipaFile) string {
	k := fig.key + "." + what
	if f != b.fx.main {
		k += "@" + shortSize(f.nominal)
	}
	return k
}

// copyKeys name the metrics of one cold copy through a mount.
type copyKeys struct{ speed, tokens, rss, cpu string }

func (b *bench) copyKeys(fig coldFigure, f *ipaFile) copyKeys {
	return copyKeys{b.key(fig, "appliveryfs", f), b.key(fig, "tokens", f), b.key(fig, "rss", f), b.key(fig, "cpu", f)}
}

// rcloneKey names an rclone metric, e.g. rcloneKey("full", "cold").
func rcloneKey(mode, what string) string { return "rclone-" + mode + "." + what }

// figure is one group of measurements, run --runs times.
type figure struct {
	name string
	run  func() error
}

// runFigures measures everything and returns what failed. Without
// --keep-going it stops at the first failed figure.
func (b *bench) runFigures() []error {
	figures := []figure{
		{"1, 3 and 6 (cold copies, warm and remounted reads)", b.sequentialRun},
		{"4 (unzip -l)", b.unzipRun},
		{"5 (time to first byte)", b.firstByteRun},
		{"2 and 6 (cold copies under caps)", b.cappedRun},
	}
	var failures []error
	for _, f := range figures {
		for i := range b.cfg.runs {
			if b.cleanup.Interrupted() {
				return failures
			}
			runner.Progress("figure %s: run %d of %d", f.name, i+1, b.cfg.runs)
			if err := f.run(); err != nil {
				runner.Progress("figure %s failed: %v", f.name, err)
				failures = append(failures, fmt.Errorf("figure %s, run %d: %w", f.name, i+1, err))
				break
			}
		}
		if len(failures) > 0 && !b.cfg.keepGoing {
			break
		}
	}
	return failures
}

// sequentialRun measures figures 1, 3 and 6 for appliveryfs, the
// baselines, and rclone on the --size file, then figure 1 at the other
// sizes.
func (b *bench) sequentialRun() error {
	if err := b.sequentialOurs(); err != nil {
		return err
	}
	if err := b.sequentialBaselines(); err != nil {
		return err
	}
	b.rcloneRuns(false)
	for _, f := range b.coldFiles() {
		if f == b.fx.main {
			continue // its cold copy was the first read of sequentialOurs
		}
		if err := b.coldAt(figCold, f); err != nil {
			return err
		}
	}
	return nil
}

// sequentialOurs reads the --size file cold, again warm in the same
// mount, and once more after a remount with the same cache directory.
func (b *bench) sequentialOurs() error {
	cacheDir, end, err := b.scenario(0, 0)
	if err != nil {
		return err
	}
	defer end()
	size := b.fx.main.size()

	m, err := b.mountOurs("cold", cacheDir, b.fx.main, mountConfig{})
	err = withMount(m, err, func(m *mountProc) error {
		if err := b.coldCopy(m, size, b.copyKeys(figCold, b.fx.main)); err != nil {
			return err
		}
		s, err := timedRead(m, size)
		if err != nil {
			return err
		}
		b.res.add(keyWarmOurs, mibPerSec(size, s.d))
		b.res.add(keyWarmCPU, cpuPerGiB(s.cpu, size))
		runner.Progress("  %s: warm re-read %.0f MiB/s, %.2f CPU-s/GiB", m.Label, mibPerSec(size, s.d), cpuPerGiB(s.cpu, size))
		return nil
	})
	if err != nil {
		return err
	}

	m, err = b.mountOurs("remount", cacheDir, b.fx.main, mountConfig{})
	return withMount(m, err, func(m *mountProc) error {
		var before, after emulator.Counters
		var cpu0, cpu1 time.Duration
		d, err := remountRead(m, size, func() { before, cpu0 = b.fx.emu.Counters(), cpuOf(m) },
			func() { after, cpu1 = b.fx.emu.Counters(), cpuOf(m) })
		if err != nil {
			return err
		}
		fetched, tokens := after.StorageBytes-before.StorageBytes, after.TokensMinted-before.TokensMinted
		cpu := cpuPerGiB(cpu1-cpu0, size)
		b.res.add(keyRemountOurs, mibPerSec(size, d))
		b.res.add(keyRemountBytes, float64(fetched))
		b.res.add(keyRemountTokens, float64(tokens))
		b.res.add(keyRemountCPU, cpu)
		runner.Progress("  %s: read after remount and drop_caches %.0f MiB/s, %.2f CPU-s/GiB; %s from storage, %d token(s)",
			m.Label, mibPerSec(size, d), cpu, humanBytes(fetched), tokens)
		return nil
	})
}

// coldAt measures fig at f's size: a cold copy from a fresh mount, then
// the baselines under the same caps.
func (b *bench) coldAt(fig coldFigure, f *ipaFile) error {
	cacheDir, end, err := b.scenario(fig.bandwidth, fig.latency)
	if err != nil {
		return err
	}
	defer end()
	m, err := b.mountOurs(fig.key+"-"+shortSize(f.nominal), cacheDir, f, mountConfig{})
	if err := withMount(m, err, func(m *mountProc) error { return b.coldCopy(m, f.size(), b.copyKeys(fig, f)) }); err != nil {
		return err
	}
	return b.baselineRuns(fig, f)
}

// cpuOf is the mount process's CPU time so far; 0 if it cannot be read
// (the figure then shows the whole read as free, and the mount's own
// errors say why).
func cpuOf(m *mountProc) time.Duration {
	d, _ := cpuTime(m.Pid())
	return d
}

// sample is one timed whole-file read through a mount.
type sample struct {
	d   time.Duration // wall time
	cpu time.Duration // the mount process's CPU time meanwhile
}

// timedRead reads m's file whole with dd and times it.
func timedRead(m *mountProc, size int64) (sample, error) {
	cpu0 := cpuOf(m)
	d, err := ddRead(m.path(), size)
	return sample{d, cpuOf(m) - cpu0}, err
}

// remountRead reads the whole file of a fresh mount with the page cache
// dropped, so that every byte comes through the mount; start and stop
// take the counters around the timed read alone.
func remountRead(m *mountProc, size int64, start, stop func()) (time.Duration, error) {
	if err := checkSize(m.path(), size); err != nil {
		return 0, err
	}
	if err := dropCaches(); err != nil {
		return 0, err
	}
	start()
	d, err := ddRead(m.path(), size)
	stop()
	return d, err
}

// coldCopy reads the whole file of size bytes from a fresh mount and
// records the throughput, the CPU time per GiB, the tokens minted and the
// daemon's peak RSS.
func (b *bench) coldCopy(m *mountProc, size int64, k copyKeys) error {
	if err := checkSize(m.path(), size); err != nil {
		return err
	}
	before := b.fx.emu.Counters()
	cpu0, err := cpuTime(m.Pid())
	if err != nil {
		return err
	}
	d, err := ddRead(m.path(), size)
	if err != nil {
		return err
	}
	cpu1, err := cpuTime(m.Pid())
	if err != nil {
		return err
	}
	after := b.fx.emu.Counters()
	rss, err := runner.ProcStatus(m.Pid(), "VmHWM")
	if err != nil {
		return err
	}
	fetched, tokens := after.StorageBytes-before.StorageBytes, after.TokensMinted-before.TokensMinted
	cpu := cpuPerGiB(cpu1-cpu0, size)
	b.res.add(k.speed, mibPerSec(size, d))
	b.res.add(k.tokens, float64(tokens))
	b.res.add(k.rss, float64(rss))
	b.res.add(k.cpu, cpu)
	runner.Progress("  %s: cold cp of %s, %.0f MiB/s, %.2f CPU-s/GiB; %d token(s); %s from storage (%.2fx the file) in %d requests; peak RSS %s",
		m.Label, humanBytes(size), mibPerSec(size, d), cpu, tokens, humanBytes(fetched), float64(fetched)/float64(size),
		after.StorageRequests-before.StorageRequests, humanBytes(rss))
	return nil
}

// baseline is a download client measured beside the mount's cold copy,
// on the same signed URL: token mint and redirect included in its time.
type baseline struct {
	key   string // in metric keys
	label string // in the table and the progress lines
	fetch func(f *ipaFile) (elapsed, cpu time.Duration, err error)
}

// baselines are curl, and aria2c when it is installed.
func (b *bench) baselines() []baseline {
	bs := []baseline{{"curl", "mint + curl -L", b.fx.curlDownload}}
	if b.aria2c != "" {
		bs = append(bs, baseline{"aria2c", "mint + 302 + " + aria2Command, b.aria2Download})
	}
	return bs
}

// baselineRuns downloads f with each baseline, under whatever caps fig's
// caller set, and records their speed and CPU per GiB.
func (b *bench) baselineRuns(fig coldFigure, f *ipaFile) error {
	size := f.size()
	for _, bl := range b.baselines() {
		before := b.fx.emu.Counters()
		d, cpu, err := bl.fetch(f)
		if err != nil {
			return fmt.Errorf("%s baseline: %w", bl.key, err)
		}
		requests := b.fx.emu.Counters().StorageRequests - before.StorageRequests
		b.res.add(b.key(fig, bl.key, f), mibPerSec(size, d))
		b.res.add(b.key(fig, bl.key+".cpu", f), cpuPerGiB(cpu, size))
		runner.Progress("  %s of %s: %.1f MiB/s, %.2f CPU-s/GiB; %d storage requests",
			bl.label, f.name(), mibPerSec(size, d), cpuPerGiB(cpu, size), requests)
	}
	return nil
}

// aria2Download is the aria2c baseline, run in a scratch directory that
// it then removes. The first download of each size is also compared byte
// for byte with the emulator's, so that a fast but wrong download cannot
// pass for the baseline.
func (b *bench) aria2Download(f *ipaFile) (elapsed, cpu time.Duration, err error) {
	dir, err := b.newDir("aria2")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	if elapsed, cpu, err = b.fx.aria2Download(b.aria2c, f, dir); err != nil {
		return 0, 0, err
	}
	if !b.aria2Verified[f.nominal] {
		if err := sameContent(filepath.Join(dir, aria2Name), f.data); err != nil {
			return 0, 0, fmt.Errorf("aria2c download: %w", err)
		}
		b.aria2Verified[f.nominal] = true
	}
	return elapsed, cpu, nil
}

// sequentialBaselines measures the baselines of figure 1 on the --size
// file, and reads of the local copy, warm and after drop_caches.
func (b *bench) sequentialBaselines() error {
	size := b.fx.main.size()
	if err := b.baselineRuns(figCold, b.fx.main); err != nil {
		return err
	}

	if _, err := ddRead(b.local, size); err != nil { // fills the page cache
		return err
	}
	d, err := ddRead(b.local, size)
	if err != nil {
		return err
	}
	b.res.add(keyWarmLocal, mibPerSec(size, d))
	runner.Progress("  local copy: warm %.0f MiB/s", mibPerSec(size, d))

	if err := dropCaches(); err != nil {
		return err
	}
	if d, err = ddRead(b.local, size); err != nil {
		return err
	}
	b.res.add(keyRemountLocal, mibPerSec(size, d))
	runner.Progress("  local copy: after drop_caches %.0f MiB/s", mibPerSec(size, d))
	return nil
}

// rcloneRuns runs rcloneRun for every rclone mode still working. A
// failing mode is skipped from then on; it does not fail the figure.
func (b *bench) rcloneRuns(capped bool) {
	for _, mode := range b.rcloneModes() {
		if err := b.rcloneRun(mode, capped); err != nil {
			b.rcloneFailed(mode, err)
		}
	}
}

// rcloneRun is the rclone side of a figure, under whatever caps it set,
// on the --size file. Capped (figure 2) it is a cold copy from a fresh
// mount; uncapped it is sequentialOurs for rclone mount: cold, warm in
// the same mount, and after a remount with the same cache directory
// (figures 1, 3 and 6). Each read records rclone's CPU per GiB too.
func (b *bench) rcloneRun(mode string, capped bool) error {
	// Not b.scenario: the caps stay as the figure set them.
	cacheDir, err := b.newDir("cache")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cacheDir)
	size := b.fx.main.size()

	reads := []string{"cold", "warm"}
	if capped {
		reads = []string{"capped"}
	}
	samples, err := b.rcloneReads(mode, cacheDir, len(reads))
	if err != nil {
		return err
	}
	for i, what := range reads {
		b.res.add(rcloneKey(mode, what), mibPerSec(size, samples[i].d))
		b.res.add(rcloneKey(mode, what+".cpu"), cpuPerGiB(samples[i].cpu, size))
		runner.Progress("  rclone (--vfs-cache-mode %s): %s read %.1f MiB/s, %.2f CPU-s/GiB",
			mode, what, mibPerSec(size, samples[i].d), cpuPerGiB(samples[i].cpu, size))
	}
	if capped {
		return nil
	}

	m, err := b.mountRclone(mode, cacheDir)
	return withMount(m, err, func(m *mountProc) error {
		var before, after int64
		var cpu0, cpu1 time.Duration
		d, err := remountRead(m, size, func() { before, cpu0 = b.files.sent.Load(), cpuOf(m) },
			func() { after, cpu1 = b.files.sent.Load(), cpuOf(m) })
		if err != nil {
			return err
		}
		fetched, cpu := after-before, cpuPerGiB(cpu1-cpu0, size)
		b.res.add(rcloneKey(mode, "remount"), mibPerSec(size, d))
		b.res.add(rcloneKey(mode, "remount.cpu"), cpu)
		b.res.add(rcloneKey(mode, "remount-bytes"), float64(fetched))
		runner.Progress("  %s: read after remount and drop_caches %.0f MiB/s, %.2f CPU-s/GiB; %s from the server",
			m.Label, mibPerSec(size, d), cpu, humanBytes(fetched))
		return nil
	})
}

// cappedRun measures figure 2: cold copies at every size with every
// storage connection capped and latency on every answer, and rclone's on
// the --size file.
func (b *bench) cappedRun() error {
	for _, f := range b.coldFiles() {
		if err := b.coldAt(figCapped, f); err != nil {
			return err
		}
	}
	b.setCaps(cappedBandwidth, cappedLatency)
	defer b.setCaps(0, 0)
	b.rcloneRuns(true)
	return nil
}

// rcloneReads mounts rclone in mode on cacheDir, times reads whole-file
// reads one after the other, and unmounts.
func (b *bench) rcloneReads(mode, cacheDir string, reads int) ([]sample, error) {
	size := b.fx.main.size()
	var samples []sample
	m, err := b.mountRclone(mode, cacheDir)
	err = withMount(m, err, func(m *mountProc) error {
		if err := checkSize(m.path(), size); err != nil {
			return err
		}
		for range reads {
			s, err := timedRead(m, size)
			if err != nil {
				return err
			}
			samples = append(samples, s)
		}
		return nil
	})
	return samples, err
}

// unzipRun measures figure 4: unzip -l on a fresh mount, and on the local
// copy after drop_caches.
func (b *bench) unzipRun() error {
	wantFiles := b.cfg.entries + 1 // the entries and Info.plist
	err := b.onFreshMount("unzip", 0, 0, func(m *mountProc) error {
		before := b.fx.emu.Counters()
		d, err := unzipList(m.path(), wantFiles)
		if err != nil {
			return err
		}
		fetched := b.fx.emu.Counters().StorageBytes - before.StorageBytes
		b.res.add(keyUnzipOurs, millis(d))
		b.res.add(keyUnzipBytes, float64(fetched))
		runner.Progress("  %s: unzip -l %.1f ms, %s from storage", m.Label, millis(d), humanBytes(fetched))
		return nil
	})
	if err != nil {
		return err
	}
	if err := dropCaches(); err != nil {
		return err
	}
	d, err := unzipList(b.local, wantFiles)
	if err != nil {
		return err
	}
	b.res.add(keyUnzipLocal, millis(d))
	runner.Progress("  local copy: unzip -l after drop_caches %.1f ms", millis(d))
	return nil
}

// firstByteRun measures figure 5 under the latency of figure 2, without
// and with its bandwidth cap.
func (b *bench) firstByteRun() error {
	if err := b.firstByte(0, keyTTFBOurs, keyTTFBBase); err != nil {
		return err
	}
	return b.firstByte(cappedBandwidth, keyTTFBCappedOurs, keyTTFBCappedBase)
}

// firstByte times open + a 4 KiB read on a fresh mount (the path already
// looked up) against mint + resolve + one Range request made directly.
func (b *bench) firstByte(bandwidth int64, oursKey, baseKey string) error {
	return b.onFreshMount("first-byte", bandwidth, cappedLatency, func(m *mountProc) error {
		before := b.fx.emu.Counters()
		d, err := readHead(m.path(), b.fx.main.data[:headBytes])
		if err != nil {
			return err
		}
		after := b.fx.emu.Counters()
		b.res.add(oursKey, millis(d))
		runner.Progress("  %s: open + 4 KiB read %.1f ms (meanwhile %d API calls, %d redirects, %d storage requests)",
			m.Label, millis(d), apiCalls(after)-apiCalls(before), after.Redirects-before.Redirects,
			after.StorageRequests-before.StorageRequests)
		// The baseline under the same caps, which end with the mount.
		if d, err = b.fx.directHead(); err != nil {
			return err
		}
		b.res.add(baseKey, millis(d))
		runner.Progress("  direct: mint + resolve + 4 KiB Range %.1f ms", millis(d))
		return nil
	})
}

// apiCalls totals the API requests of all kinds.
func apiCalls(c emulator.Counters) int64 {
	var n int64
	for _, v := range c.APICalls {
		n += v
	}
	return n
}
