package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/cache/disk"
)

// connFlags are the flags of every command that talks to Applivery.
type connFlags struct {
	tokenFile   string
	apiURL      string
	downloadURL string
	stderr      io.Writer // for warnings
}

// newConnFlags registers the connection flags on fl.
func newConnFlags(fl *pflag.FlagSet, stderr io.Writer) *connFlags {
	c := &connFlags{stderr: stderr}
	fl.StringVar(&c.tokenFile, "token-file", "", "read the Service Account token from `FILE` (default: $APPLIVERY_TOKEN)")
	fl.StringVar(&c.apiURL, "api-url", envOr("APPLIVERY_API_URL", api.DefaultAPIURL), "Applivery API base `URL` ($APPLIVERY_API_URL)")
	fl.StringVar(&c.downloadURL, "download-url", envOr("APPLIVERY_DOWNLOAD_URL", api.DefaultDownloadURL),
		"Applivery download host base `URL` ($APPLIVERY_DOWNLOAD_URL)")
	return c
}

// envOr is the environment's value of name, or def when it is unset or empty:
// units and CI jobs set the connection once instead of on every command.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client builds an API client. The token is never taken from a flag value,
// where it would show in ps and shell history.
func (c *connFlags) client() (*api.Client, error) { return c.clientLogging(nil) }

// clientLogging is client with a logger for mints, re-mints and retries.
func (c *connFlags) clientLogging(logger *slog.Logger) (*api.Client, error) {
	token := strings.TrimSpace(os.Getenv("APPLIVERY_TOKEN"))
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		if st, err := os.Stat(c.tokenFile); err == nil && st.Mode().Perm()&0o077 != 0 && c.stderr != nil {
			fmt.Fprintf(c.stderr, "appliveryfs: warning: token file %s is readable by group or others (mode %04o): chmod 600 %s\n",
				c.tokenFile, st.Mode().Perm(), c.tokenFile)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("token file %s is empty", c.tokenFile)
		}
	}
	if token == "" {
		return nil, usageErr("no token: set APPLIVERY_TOKEN or pass --token-file FILE")
	}
	return api.NewClient(api.Config{APIURL: c.apiURL, DownloadURL: c.downloadURL, Token: token,
		UserAgent: "appliveryfs/" + moduleVersion(), Logger: logger})
}

// byteSize is a flag value such as 256M, 10GiB or 1048576.
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
func (b *byteSize) Type() string { return "size" }
func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: want a byte count such as 1048576, 256M or 10G", s)
	}
	return n * mult, nil
}

// mountFlags are the flags of mount and demo.
type mountFlags struct {
	orgs        []string
	uid, gid    int
	cacheSize   byteSize
	blockSize   byteSize
	cacheDir    string
	diskSize    byteSize
	dirTTL      time.Duration
	ioTimeout   time.Duration
	allowOther  bool
	readAheadKB int
	prefetch    int
	startWindow int
	maxBG       int
	kernelCache bool
	directIO    bool
	zeroCopy    bool
	reuseBufs   bool
	debug       bool

	allowNonEmpty bool
	stopTimeout   time.Duration
	fsName        string
	metricsAddr   string
	cpuProfile    string
	log           *logFlags
	// Only mount has these: demo always runs in the foreground.
	daemon  bool
	logFile string
}

// newMountFlags registers the flags of mount and demo on fl.
func newMountFlags(fl *pflag.FlagSet) *mountFlags {
	m := &mountFlags{}
	m.cacheSize, m.blockSize, m.diskSize = 256<<20, 4<<20, 10<<30
	fl.StringArrayVar(&m.orgs, "org", nil, "show only this organization (id or slug); repeatable")
	fl.IntVar(&m.uid, "uid", os.Getuid(), "owner of every file")
	fl.IntVar(&m.gid, "gid", os.Getgid(), "group of every file")
	fl.Var(&m.cacheSize, "cache-size", "memory for cached and in-flight blocks, all files together")
	fl.Var(&m.blockSize, "block-size", "bytes fetched per storage request")
	fl.StringVar(&m.cacheDir, "cache-dir", defaultCacheDir(), "persistent cache `DIR`")
	fl.Var(&m.diskSize, "disk-cache-size", "cap of the persistent block cache; 0 disables it")
	fl.DurationVar(&m.dirTTL, "dir-ttl", time.Minute, "how long organization and app listings are trusted")
	fl.DurationVar(&m.ioTimeout, "io-timeout", 60*time.Second, "a block that cannot be read in this time, retries included, fails its read with EIO")
	fl.BoolVar(&m.allowOther, "allow-other", false, "let other users read the mount")
	fl.IntVar(&m.readAheadKB, "read-ahead-kb", 4096, "kernel readahead of the mount")
	fl.IntVar(&m.prefetch, "prefetch-blocks", 16, "most blocks fetched ahead of a sequential reader, at most half of --cache-size; 0 turns prefetch off")
	fl.IntVar(&m.startWindow, "start-window", 16, "prefetch window opened, once its first bytes arrive, by a first read at offset 0 (copies start there); 0 waits for a second sequential read (tuning)")
	fl.IntVar(&m.maxBG, "max-background", 0, "kernel readahead READs in flight; 0: as many 1 MiB READs as a quarter of --cache-size, 12 to 64 (tuning)")
	fl.BoolVar(&m.kernelCache, "kernel-cache", true, "keep file pages cached in the kernel across opens (tuning: builds never change)")
	fl.BoolVar(&m.directIO, "direct-io", true, "read and write the disk cache bypassing the page cache, where its file system allows (tuning)")
	fl.BoolVar(&m.zeroCopy, "zero-copy", true, "answer reads from the cached block instead of copying it first (tuning)")
	fl.BoolVar(&m.reuseBufs, "reuse-buffers", true, "reuse the memory of evicted blocks instead of allocating each block anew (tuning)")
	fl.BoolVar(&m.debug, "debug", false, "log every FUSE request")
	fl.BoolVar(&m.allowNonEmpty, "allow-non-empty", false, "mount over a directory that has files, hiding them while mounted")
	fl.DurationVar(&m.stopTimeout, "stop-timeout", 5*time.Second,
		"on SIGINT or SIGTERM, how long reads in flight may finish after the mount is detached")
	fl.StringVar(&m.fsName, "fsname", "appliveryfs", "the mount's source, as /proc/mounts and df show it")
	fl.StringVar(&m.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on `HOST:PORT` at /metrics")
	fl.StringVar(&m.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole mount to `FILE` at unmount (go tool pprof)")
	m.log = newLogFlags(fl)
	return m
}

// registerBackground adds the flags of a mount that may leave the foreground.
func (m *mountFlags) registerBackground(fl *pflag.FlagSet) {
	fl.BoolVar(&m.daemon, "daemon", false, "return once the mount serves requests, leaving it in the background")
	fl.StringVar(&m.logFile, "log-file", "", "append the log to `FILE`; in the background (--daemon, fstab) nothing is logged without it")
}

// defaultCacheDir follows systemd's CacheDirectory= first, then the XDG
// base directory spec.
func defaultCacheDir() string {
	if d, _, _ := strings.Cut(os.Getenv("CACHE_DIRECTORY"), ":"); d != "" {
		return d // made for this service alone
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "appliveryfs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "appliveryfs")
	}
	return filepath.Join(os.TempDir(), "appliveryfs-cache")
}

// cacheConfig turns the flags into the configuration the cache runs
// with: the one place where they are checked and capped, so that every
// figure derived from them (the Go memory limit, the log) is the one in
// force rather than the raw flag.
func (m *mountFlags) cacheConfig() (cache.Config, error) {
	bs, mem := int64(m.blockSize), int64(m.cacheSize)
	switch {
	case bs < 64<<10 || bs > 64<<20:
		return cache.Config{}, usageErr("--block-size %s: want 64K to 64M", &m.blockSize)
	case mem < 4*bs:
		min := byteSize(4 * bs)
		return cache.Config{}, usageErr("--cache-size %s: it must hold at least 4 blocks of --block-size %s (%s or more)",
			&m.cacheSize, &m.blockSize, &min)
	case m.prefetch < 0:
		return cache.Config{}, usageErr("--prefetch-blocks %d: want 0 (off) or more", m.prefetch)
	case m.startWindow < 0:
		return cache.Config{}, usageErr("--start-window %d: want 0 (wait for a second read) or more", m.startWindow)
	case m.ioTimeout <= 0:
		return cache.Config{}, usageErr("--io-timeout %s: want a positive duration", m.ioTimeout)
	case m.dirTTL <= 0:
		return cache.Config{}, usageErr("--dir-ttl %s: want a positive duration", m.dirTTL)
	}
	// Prefetch may hold at most half the budget, so that demand reads
	// and other files' blocks always have room.
	ahead := min(m.prefetch, int(mem/bs)/2)
	return cache.Config{BlockSize: bs, MemoryBytes: mem, IOTimeout: m.ioTimeout, MaxAhead: ahead,
		StartWindow: min(m.startWindow, ahead), FreshBuffers: !m.reuseBufs}, nil
}

// maxBackground is the kernel's cap on readahead READs in flight. Each
// holds a 1 MiB buffer while it waits for its block, memory the cache's
// budget does not see: a quarter of the budget keeps a mount within
// --cache-size + 64 MiB under many readers, and 64 is where more stops
// helping (README, levers).
func (m *mountFlags) maxBackground() int {
	if m.maxBG > 0 {
		return m.maxBG
	}
	return min(64, max(12, int(int64(m.cacheSize)/4/(1<<20))))
}

// memoryLimit is the Go runtime's soft memory limit for a cache of cfg:
// evicted blocks are garbage, and the limit makes the runtime collect them
// before the process outgrows its budget.
func memoryLimit(cfg cache.Config) int64 { return cfg.MemoryBytes + 48<<20 }

// openCaches opens the disk cache and the memory cache in front of it, as
// the flags size them; close the memory cache first.
func (m *mountFlags) openCaches(logger *slog.Logger) (*disk.Cache, *cache.Cache, error) {
	cfg, err := m.cacheConfig()
	if err != nil {
		return nil, nil, err
	}
	store, err := disk.Open(m.cacheDir, int64(m.diskSize))
	if err != nil {
		return nil, nil, fmt.Errorf("open cache dir: %w", err)
	}
	cfg.Store, cfg.Logger = store, logger
	if logger != nil {
		store.SetLogger(logger)
	}
	store.SetDirectIO(m.directIO)
	c, err := cache.New(cfg)
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("memory cache: %w", err)
	}
	debug.SetMemoryLimit(memoryLimit(cfg))
	if logger != nil {
		logger.Info("cache", "block_size", cfg.BlockSize, "memory_bytes", cfg.MemoryBytes, "prefetch_blocks", cfg.MaxAhead,
			"io_timeout", cfg.IOTimeout.String(), "disk_cache_dir", m.cacheDir, "disk_cache_bytes", int64(m.diskSize), "direct_io", store.DirectIO(),
			"go_memory_limit", memoryLimit(cfg))
	}
	return store, c, nil
}
