//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// Mount settings passed explicitly, so that the targets derived from them
// hold whatever the binary's defaults become.
const (
	cacheSize   = 256 << 20 // --cache-size
	rssHeadroom = 64 << 20  // allowed above --cache-size
)

// bench is one benchmark session: its fixture, mounts and results.
type bench struct {
	cfg     config
	cleanup runner.Cleanup
	mounts  mountSet
	res     results

	work    string // scratch directory, removed at the end
	logs    string // daemon logs, kept
	bin     string // appliveryfs binary
	fx      *fixture
	local   string // local copy of the .ipa
	machine []string

	aria2c        string         // aria2c binary; "" to skip its rows
	aria2Note     string         // why its rows are missing
	aria2Verified map[int64]bool // sizes whose download was compared byte for byte

	rclone      string      // rclone binary; "" to skip its rows
	rcloneConf  string      // empty config file for rclone
	files       *fileServer // what rclone mounts
	rcloneNotes []string
	rcloneDown  map[string]error // modes whose mount failed

	leverDefaults map[string]string // mount flag -> its default, from mount --help

	seq int // numbers scratch directories and logs
}

// setup prepares everything the figures need. What it starts is stopped
// by b.cleanup.
func (b *bench) setup() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it mounts FUSE filesystems and drops the page cache")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no FUSE device: %w", err)
	}
	for _, tool := range []string{"dd", "curl", "unzip", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed: %w", tool, err)
		}
	}
	b.machine = machineInfo()
	if err := b.makeDirs(); err != nil {
		return err
	}
	// Last in, first out: mounts go before the servers they read from.
	b.cleanup.Add(b.closeServers)
	b.cleanup.Add(b.mounts.stopAll)
	bin, err := runner.Binary(b.cfg.bin, b.work) // --bin, or one built from the module
	if err != nil {
		return err
	}
	b.bin = bin
	others := b.otherSizes()
	all := append([]int64{b.cfg.size}, others...)
	slices.Sort(all)
	runner.Progress("generating .ipa files of %s with %d entries each", strings.Join(mapSlice(all, humanBytes), ", "), b.cfg.entries)
	fx, err := startFixture(b.cfg.size, others, b.cfg.entries)
	if err != nil {
		return fmt.Errorf("start the emulator: %w", err)
	}
	b.fx = fx
	if !b.cfg.figures {
		return nil // the levers need neither the local copy nor the baselines
	}
	b.local = filepath.Join(b.work, "local.ipa")
	if err := fx.writeLocalCopy(b.local); err != nil {
		return err
	}
	b.setupAria2()
	b.setupRclone()
	return nil
}

// otherSizes are the sizes of the .ipa files needed besides --size's: the
// cold copies' and the levers'.
func (b *bench) otherSizes() []int64 {
	var sizes []int64
	if b.cfg.figures {
		sizes = append(sizes, b.cfg.sizes...)
	}
	if b.cfg.levers {
		sizes = append(sizes, leverSizes()...)
	}
	sizes = slices.DeleteFunc(sizes, func(n int64) bool { return n == b.cfg.size })
	slices.Sort(sizes)
	return slices.Compact(sizes)
}

// coldFiles are the files of the cold copies of figures 1 and 2, smallest
// first: one per --sizes, and --size's.
func (b *bench) coldFiles() []*ipaFile {
	sizes := append([]int64{b.cfg.size}, b.cfg.sizes...)
	slices.Sort(sizes)
	return mapSlice(slices.Compact(sizes), func(n int64) *ipaFile { return b.fx.bySize[n] })
}

// setupAria2 finds aria2c; without it its baseline rows are skipped.
func (b *bench) setupAria2() {
	path, err := exec.LookPath("aria2c")
	if err != nil {
		b.aria2Note = "aria2c rows skipped: aria2c is not on PATH"
		return
	}
	b.aria2c, b.aria2Verified = path, map[int64]bool{}
}

// makeDirs creates the scratch and log directories. The scratch one is
// removed at the end unless something is still mounted below it.
func (b *bench) makeDirs() error {
	var err error
	if b.work, err = b.cleanup.ScratchDir("bench", "appliveryfs-bench-"); err != nil {
		return err
	}
	if b.logs, err = os.MkdirTemp("", "appliveryfs-bench-logs-"); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	return nil
}

// setupRclone finds rclone and starts the file server it mounts.
func (b *bench) setupRclone() {
	b.rcloneDown = map[string]error{}
	if len(b.cfg.rcloneModes) == 0 {
		b.rcloneNotes = append(b.rcloneNotes, "rclone rows skipped: --rclone-modes is empty")
		return
	}
	path, err := exec.LookPath("rclone")
	if err != nil {
		b.rcloneNotes = append(b.rcloneNotes, "rclone rows skipped: rclone is not on PATH")
		return
	}
	conf := filepath.Join(b.work, "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		b.rcloneNotes = append(b.rcloneNotes, "rclone rows skipped: "+err.Error())
		return
	}
	fs, err := startFileServer("bench.ipa", b.fx.main.data)
	if err != nil {
		b.rcloneNotes = append(b.rcloneNotes, "rclone rows skipped: "+err.Error())
		return
	}
	b.rclone, b.rcloneConf, b.files = path, conf, fs
}

// closeServers stops the emulator and rclone's file server.
func (b *bench) closeServers() {
	if b.files != nil {
		b.files.Close()
	}
	if b.fx != nil {
		b.fx.emu.Close()
	}
}

// rcloneModes lists the --vfs-cache-mode values still to measure.
func (b *bench) rcloneModes() []string {
	if b.rclone == "" {
		return nil
	}
	var modes []string
	for _, m := range b.cfg.rcloneModes {
		if b.rcloneDown[m] == nil {
			modes = append(modes, m)
		}
	}
	return modes
}

// rcloneFailed records why a mode's figures are missing; rclone is only
// a comparison, so its failures never stop the bench.
func (b *bench) rcloneFailed(mode string, err error) {
	if b.cleanup.Interrupted() {
		return
	}
	runner.Progress("rclone --vfs-cache-mode %s failed, skipping it from now on: %v", mode, err)
	b.rcloneDown[mode] = err
}

// setCaps sets latency and per-connection storage bandwidth on the
// emulator and on rclone's file server alike.
func (b *bench) setCaps(bandwidth int64, latency time.Duration) {
	b.fx.emu.SetBandwidth(bandwidth)
	b.fx.emu.SetLatency(latency)
	if b.files != nil {
		b.files.setCaps(bandwidth, latency)
	}
}

// scenario prepares one measurement: it sets the caps the measurement runs
// under and makes it a fresh --cache-dir, so that it inherits neither the
// caps nor the cached blocks of the one before. end removes the directory
// and lifts the caps.
func (b *bench) scenario(bandwidth int64, latency time.Duration) (cacheDir string, end func(), err error) {
	b.setCaps(bandwidth, latency)
	if cacheDir, err = b.newDir("cache"); err != nil {
		b.setCaps(0, 0)
		return "", nil, err
	}
	return cacheDir, func() {
		os.RemoveAll(cacheDir)
		b.setCaps(0, 0)
	}, nil
}

// onFreshMount runs fn on a new mount of ours with an empty cache
// directory, under the given caps, once the main file shows its full
// size.
func (b *bench) onFreshMount(label string, bandwidth int64, latency time.Duration, fn func(m *mountProc) error) error {
	cacheDir, end, err := b.scenario(bandwidth, latency)
	if err != nil {
		return err
	}
	defer end()
	m, err := b.mountOurs(label, cacheDir, b.fx.main, mountConfig{})
	return withMount(m, err, func(m *mountProc) error {
		if err := checkSize(m.path(), b.fx.main.size()); err != nil {
			return err
		}
		return fn(m)
	})
}

// newDir makes a numbered scratch directory.
func (b *bench) newDir(kind string) (string, error) {
	if b.cleanup.Interrupted() {
		return "", errors.New("interrupted")
	}
	b.seq++
	dir := filepath.Join(b.work, fmt.Sprintf("%s-%02d", kind, b.seq))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// mountOurs mounts appliveryfs with the given cache directory, set up as
// c says; f is the file the mount's path() names.
func (b *bench) mountOurs(label, cacheDir string, f *ipaFile, c mountConfig) (*mountProc, error) {
	dir, err := b.newDir("mnt")
	if err != nil {
		return nil, err
	}
	emu := b.fx.emu
	extra := c.args()
	if b.cfg.profileDir != "" {
		extra = append(extra, "--cpu-profile", filepath.Join(b.cfg.profileDir, fmt.Sprintf("%02d-%s.pprof", b.seq, label)))
	}
	return b.mounts.start(mountSpec{file: f.mountPath(), MountSpec: runner.MountSpec{
		Label:   "appliveryfs (" + label + ")",
		Dir:     dir,
		LogPath: filepath.Join(b.logs, fmt.Sprintf("%02d-appliveryfs-%s.log", b.seq, label)),
		Env:     append(mountEnv(), append(c.environ(), "APPLIVERY_TOKEN="+emu.Token())...),
		Argv: append(append([]string{b.bin, "mount", "--api-url", emu.APIURL(), "--download-url", emu.DownloadURL(),
			"--cache-dir", cacheDir, "--cache-size", fmt.Sprint(cacheSize)}, extra...), dir),
	}})
}

// mountEnv is this process's environment without the variables the
// environment levers set, so that a mount at its defaults runs with the
// Go runtime's own.
func mountEnv() []string {
	names := leverEnvNames()
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, name)
	})
}

// mountRclone mounts rclone's http backend over the file server.
func (b *bench) mountRclone(mode, cacheDir string) (*mountProc, error) {
	dir, err := b.newDir("mnt")
	if err != nil {
		return nil, err
	}
	return b.mounts.start(mountSpec{file: b.files.name, MountSpec: runner.MountSpec{
		Label:   "rclone (--vfs-cache-mode " + mode + ")",
		Dir:     dir,
		LogPath: filepath.Join(b.logs, fmt.Sprintf("%02d-rclone-%s.log", b.seq, mode)),
		Argv: []string{b.rclone, "mount", ":http:", dir, "--http-url", b.files.url,
			"--config", b.rcloneConf, "--read-only", "--vfs-cache-mode", mode,
			"--cache-dir", cacheDir, "--dir-cache-time", "1h"},
	}})
}

// withMount runs fn on a mount and always stops it.
func withMount(m *mountProc, err error, fn func(m *mountProc) error) error {
	if err != nil {
		return err
	}
	return errors.Join(fn(m), m.stop())
}

// machineInfo describes the machine for the report's header.
func machineInfo() []string {
	nproc := fmt.Sprint(runtime.NumCPU())
	if out, err := command("nproc"); err == nil {
		nproc = strings.TrimSpace(string(out))
	}
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	goVersion := runtime.Version()
	if out, err := command("go", "version"); err == nil {
		goVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	info := []string{
		"nproc:  " + nproc,
		"cpu:    " + model,
		"kernel: " + kernel,
		"go:     " + goVersion,
	}
	for _, tool := range []string{"rclone", "aria2c"} {
		if out, err := command(tool, "--version"); err == nil {
			info = append(info, fmt.Sprintf("%-7s %s", tool+":", firstLine(out)))
		}
	}
	return info
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// mapSlice returns fn of each element of s.
func mapSlice[T, U any](s []T, fn func(T) U) []U {
	out := make([]U, len(s))
	for i, v := range s {
		out[i] = fn(v)
	}
	return out
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
