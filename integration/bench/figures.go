//go:build linux

package main

import (
	"fmt"
	"os"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// The caps of figure 2, also used for the time to first byte.
const (
	cappedBandwidth = 32 << 20 // bytes per second per storage connection
	cappedLatency   = 20 * time.Millisecond
)

// Metric keys. Throughputs are in MiB/s, times in ms, sizes in bytes, CPU
// in seconds per GiB read.
const (
	keyColdOurs       = "cold.appliveryfs"
	keyColdCurl       = "cold.curl"
	keyColdCurlCPU    = "cold.curl.cpu"
	keyCappedCurlCPU  = "capped.curl.cpu"
	keyRemountCPU     = "remount.cpu"
	keyWarmOurs       = "warm.appliveryfs"
	keyWarmLocal      = "warm.local"
	keyRemountOurs    = "remount.appliveryfs"
	keyRemountLocal   = "remount.local-after-drop-caches"
	keyRemountBytes   = "remount.storage-bytes"
	keyRemountTokens  = "remount.tokens"
	keyCappedOurs     = "capped.appliveryfs"
	keyCappedCurl     = "capped.curl"
	keyUnzipOurs      = "unzip.appliveryfs"
	keyUnzipLocal     = "unzip.local-after-drop-caches"
	keyUnzipBytes     = "unzip.storage-bytes"
	keyTTFBOurs       = "ttfb.appliveryfs"
	keyTTFBBase       = "ttfb.direct"
	keyTTFBCappedOurs = "ttfb-capped.appliveryfs"
	keyTTFBCappedBase = "ttfb-capped.direct"
)

// copyKeys name the metrics of one cold copy through a mount.
type copyKeys struct{ speed, tokens, rss, cpu string }

var (
	coldKeys   = copyKeys{keyColdOurs, "cold.tokens", "cold.rss", "cold.cpu"}
	cappedKeys = copyKeys{keyCappedOurs, "capped.tokens", "capped.rss", "capped.cpu"}
)

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
		{"1, 3 and 6 (cold, warm and remounted reads)", b.sequentialRun},
		{"4 (unzip -l)", b.unzipRun},
		{"5 (time to first byte)", b.firstByteRun},
		{"2 and 6 (cold copy under caps)", b.cappedRun},
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
// baselines, and rclone.
func (b *bench) sequentialRun() error {
	if err := b.sequentialOurs(); err != nil {
		return err
	}
	if err := b.sequentialBaselines(); err != nil {
		return err
	}
	b.rcloneRuns(false)
	return nil
}

// sequentialOurs reads the file cold, again warm in the same mount, and
// once more after a remount with the same cache directory.
func (b *bench) sequentialOurs() error {
	cacheDir, end, err := b.scenario(0, 0)
	if err != nil {
		return err
	}
	defer end()
	size := b.fx.size()

	m, err := b.mountOurs("cold", cacheDir)
	err = withMount(m, err, func(m *mountProc) error {
		if err := b.coldCopy(m, coldKeys); err != nil {
			return err
		}
		d, err := ddRead(m.path(), size)
		if err != nil {
			return err
		}
		b.res.add(keyWarmOurs, mibPerSec(size, d))
		runner.Progress("  %s: warm re-read %.0f MiB/s", m.Label, mibPerSec(size, d))
		return nil
	})
	if err != nil {
		return err
	}

	m, err = b.mountOurs("remount", cacheDir)
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

// cpuOf is the mount process's CPU time so far; 0 if it cannot be read
// (the figure then shows the whole read as free, and the mount's own
// errors say why).
func cpuOf(m *mountProc) time.Duration {
	d, _ := runner.CPUTime(m.Pid())
	return d
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

// coldCopy reads the whole file from a fresh mount and records the
// throughput, the tokens minted and the daemon's peak RSS.
func (b *bench) coldCopy(m *mountProc, k copyKeys) error {
	size := b.fx.size()
	if err := checkSize(m.path(), size); err != nil {
		return err
	}
	before := b.fx.emu.Counters()
	cpu0, err := runner.CPUTime(m.Pid())
	if err != nil {
		return err
	}
	d, err := ddRead(m.path(), size)
	if err != nil {
		return err
	}
	cpu1, err := runner.CPUTime(m.Pid())
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
	runner.Progress("  %s: cold cp %.0f MiB/s, %.2f CPU-s/GiB; %d token(s); %s from storage (%.2fx the file) in %d requests; peak RSS %s",
		m.Label, mibPerSec(size, d), cpu, tokens, humanBytes(fetched), float64(fetched)/float64(size),
		after.StorageRequests-before.StorageRequests, humanBytes(rss))
	return nil
}

// curlRun downloads the file with curl through mint and redirect, and
// records its speed and CPU per GiB under the given keys.
func (b *bench) curlRun(speedKey, cpuKey string) error {
	size := b.fx.size()
	d, cpu, err := b.fx.curlDownload()
	if err != nil {
		return err
	}
	b.res.add(speedKey, mibPerSec(size, d))
	b.res.add(cpuKey, cpuPerGiB(cpu, size))
	runner.Progress("  curl: mint + curl -L %.1f MiB/s, %.2f CPU-s/GiB", mibPerSec(size, d), cpuPerGiB(cpu, size))
	return nil
}

// sequentialBaselines measures curl and reads of the local copy, warm and
// after drop_caches.
func (b *bench) sequentialBaselines() error {
	size := b.fx.size()
	if err := b.curlRun(keyColdCurl, keyColdCurlCPU); err != nil {
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

// rcloneRun is the rclone side of a figure, under whatever caps it set.
// Capped (figure 2) it is a cold copy from a fresh mount; uncapped it is
// sequentialOurs for rclone mount: cold, warm in the same mount, and after
// a remount with the same cache directory (figures 1, 3 and 6).
func (b *bench) rcloneRun(mode string, capped bool) error {
	// Not b.scenario: the caps stay as the figure set them.
	cacheDir, err := b.newDir("cache")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cacheDir)
	size := b.fx.size()

	reads := 2 // cold, then warm
	if capped {
		reads = 1
	}
	ds, err := b.rcloneReads(mode, cacheDir, reads)
	if err != nil {
		return err
	}
	cold := mibPerSec(size, ds[0])
	if capped {
		b.res.add(rcloneKey(mode, "capped"), cold)
		runner.Progress("  rclone (--vfs-cache-mode %s): cold cp %.1f MiB/s", mode, cold)
		return nil
	}
	warm := mibPerSec(size, ds[1])
	b.res.add(rcloneKey(mode, "cold"), cold)
	b.res.add(rcloneKey(mode, "warm"), warm)
	runner.Progress("  rclone (--vfs-cache-mode %s): cold cp %.0f MiB/s, warm re-read %.0f MiB/s", mode, cold, warm)

	m, err := b.mountRclone(mode, cacheDir)
	return withMount(m, err, func(m *mountProc) error {
		var before, after int64
		d, err := remountRead(m, size, func() { before = b.files.sent.Load() }, func() { after = b.files.sent.Load() })
		if err != nil {
			return err
		}
		fetched := after - before
		b.res.add(rcloneKey(mode, "remount"), mibPerSec(size, d))
		b.res.add(rcloneKey(mode, "remount-bytes"), float64(fetched))
		runner.Progress("  %s: read after remount and drop_caches %.0f MiB/s; %s from the server",
			m.Label, mibPerSec(size, d), humanBytes(fetched))
		return nil
	})
}

// cappedRun measures figure 2: cold copies with every storage connection
// capped and latency on every answer.
func (b *bench) cappedRun() error {
	cacheDir, end, err := b.scenario(cappedBandwidth, cappedLatency)
	if err != nil {
		return err
	}
	defer end()

	m, err := b.mountOurs("capped", cacheDir)
	if err := withMount(m, err, func(m *mountProc) error { return b.coldCopy(m, cappedKeys) }); err != nil {
		return err
	}

	if err := b.curlRun(keyCappedCurl, keyCappedCurlCPU); err != nil {
		return err
	}

	b.rcloneRuns(true)
	return nil
}

// rcloneReads mounts rclone in mode on cacheDir, times reads whole-file
// reads one after the other, and unmounts.
func (b *bench) rcloneReads(mode, cacheDir string, reads int) ([]time.Duration, error) {
	size := b.fx.size()
	var ds []time.Duration
	m, err := b.mountRclone(mode, cacheDir)
	err = withMount(m, err, func(m *mountProc) error {
		if err := checkSize(m.path(), size); err != nil {
			return err
		}
		for range reads {
			d, err := ddRead(m.path(), size)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		return nil
	})
	return ds, err
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
		d, err := readHead(m.path(), b.fx.data[:headBytes])
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
