// Command appliveryfs shows the app builds stored in Applivery as files.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/fs"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `appliveryfs shows the app builds stored in Applivery as read-only files.

Usage:
  appliveryfs ls [ORG[/APP[/BUILD]]] [flags]   list organizations, apps, builds or one build
  appliveryfs mount [flags] MOUNTPOINT         mount every build the token can see
  appliveryfs emulator [flags]                 serve a local Applivery emulator with sample data
  appliveryfs demo [MOUNTPOINT]                run the emulator and mount it, to try things out
  appliveryfs version                          print the version

The Service Account token comes from $APPLIVERY_TOKEN or --token-file FILE.
Run 'appliveryfs COMMAND --help' for the flags of a command.
`

// exitError carries an exit status; its message is printed as one line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "appliveryfs: %v\n", err)
	} else {
		code = 0
	}
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageErr("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "ls":
		return runLs(rest, stdout, stderr)
	case "mount":
		return runMount(rest, stderr)
	case "emulator":
		return runEmulator(rest, stdout, stderr)
	case "demo":
		return runDemo(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "appliveryfs %s\n", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageErr("unknown command %q", cmd)
}

// connFlags are the flags of every command that talks to Applivery.
type connFlags struct {
	tokenFile   string
	apiURL      string
	downloadURL string
}

func (c *connFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&c.tokenFile, "token-file", "", "read the Service Account token from `FILE` (default: $APPLIVERY_TOKEN)")
	fl.StringVar(&c.apiURL, "api-url", api.DefaultAPIURL, "Applivery API base `URL`")
	fl.StringVar(&c.downloadURL, "download-url", api.DefaultDownloadURL, "Applivery download host base `URL`")
}

// client builds an API client. The token is never taken from a flag value,
// where it would show in ps and shell history.
func (c *connFlags) client() (*api.Client, error) {
	token := strings.TrimSpace(os.Getenv("APPLIVERY_TOKEN"))
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
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
		UserAgent: "appliveryfs/" + version})
}

func newFlagSet(name, synopsis string, stderr io.Writer) *pflag.FlagSet {
	fl := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: appliveryfs %s\n\nFlags:\n%s", synopsis, fl.FlagUsages())
	}
	return fl
}

func parse(fl *pflag.FlagSet, args []string) error {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}

func runLs(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("ls", "ls [ORG[/APP[/BUILD]]] [flags]", stderr)
	var conn connFlags
	conn.register(fl)
	asJSON := fl.Bool("json", false, "print JSON instead of a table")
	timeout := fl.Duration("timeout", 60*time.Second, "give up after this long")
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		return usageErr("ls takes at most one ORG[/APP[/BUILD]] argument")
	}
	var parts []string
	if fl.NArg() == 1 {
		parts = strings.Split(strings.Trim(fl.Arg(0), "/"), "/")
		if len(parts) > 3 || slicesContainsEmpty(parts) {
			return usageErr("bad path %q: want ORG, ORG/APP or ORG/APP/BUILD", fl.Arg(0))
		}
	}
	client, err := conn.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var v any
	var table func(*tabwriter.Writer)
	switch len(parts) {
	case 0:
		orgs, err := client.Organizations(ctx)
		if err != nil {
			return err
		}
		v = orgs
		table = func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "SLUG\tNAME\tID")
			for _, o := range orgs {
				fmt.Fprintf(w, "%s\t%s\t%s\n", o.Slug, o.Name, o.ID)
			}
		}
	case 1:
		apps, err := client.Apps(ctx, parts[0])
		if err != nil {
			return err
		}
		v = apps
		table = func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "SLUG\tNAME\tPLATFORMS\tID")
			for _, a := range apps {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", a.Slug, a.Name, strings.Join(a.BuildPlatforms, ","), a.ID)
			}
		}
	case 2:
		builds, err := client.Builds(ctx, parts[0], parts[1])
		if err != nil {
			return err
		}
		v = builds
		table = func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tVERSION\tCODE\tPLATFORM\tSTATUS\tCREATED\tSIZE")
			for _, b := range builds {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, orDash(b.VersionName), orDash(string(b.VersionCode)),
					orDash(platformOf(&b)), b.Status, b.CreatedAt.UTC().Format("2006-01-02 15:04"), sizeOf(&b))
			}
		}
	case 3:
		b, err := client.Build(ctx, parts[0], parts[1], parts[2])
		if err != nil {
			return err
		}
		v = b
		table = func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ID\t%s\nSTATUS\t%s\nPLATFORM\t%s\nVERSION\t%s (%s)\nPACKAGE\t%s\nMIN OS\t%s\nCREATED\t%s\nSIZE\t%s\n",
				b.ID, b.Status, platformOf(b), orDash(b.VersionName), orDash(string(b.VersionCode)),
				orDash(b.Info.PackageName()), orDash(b.Info.MinOS()), b.CreatedAt.UTC().Format(time.RFC3339), sizeOf(b))
			for _, a := range b.Artifacts() {
				size := "unknown until read"
				if a.Size >= 0 {
					size = strconv.FormatInt(a.Size, 10)
				}
				fmt.Fprintf(w, "FILE\t%s.%s\t%s\n", a.Type, a.Ext, size)
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func slicesContainsEmpty(s []string) bool {
	for _, p := range s {
		if p == "" {
			return true
		}
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func platformOf(b *api.Build) string {
	if b.BuildPlatform != "" {
		return b.BuildPlatform
	}
	return b.OS
}

func sizeOf(b *api.Build) string {
	for _, a := range b.Artifacts() {
		if a.Type == api.File && a.Size >= 0 {
			return humanBytes(a.Size)
		}
	}
	if b.Size.Valid {
		return humanBytes(b.Size.Value)
	}
	return "-"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
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
	maxBG       int
	kernelCache bool
	debug       bool
}

func (m *mountFlags) register(fl *pflag.FlagSet) {
	m.cacheSize, m.blockSize, m.diskSize = 256<<20, 4<<20, 10<<30
	fl.StringArrayVar(&m.orgs, "org", nil, "show only this organization (id or slug); repeatable")
	fl.IntVar(&m.uid, "uid", os.Getuid(), "owner of every file")
	fl.IntVar(&m.gid, "gid", os.Getgid(), "group of every file")
	fl.Var(&m.cacheSize, "cache-size", "memory for cached and in-flight blocks, all files together")
	fl.Var(&m.blockSize, "block-size", "bytes fetched per storage request")
	fl.StringVar(&m.cacheDir, "cache-dir", defaultCacheDir(), "persistent cache `DIR`")
	fl.Var(&m.diskSize, "disk-cache-size", "cap of the persistent block cache; 0 disables it")
	fl.DurationVar(&m.dirTTL, "dir-ttl", time.Minute, "how long organization and app listings are trusted")
	fl.DurationVar(&m.ioTimeout, "io-timeout", 60*time.Second, "a read that cannot complete in this time fails with EIO")
	fl.BoolVar(&m.allowOther, "allow-other", false, "let other users read the mount")
	fl.IntVar(&m.readAheadKB, "read-ahead-kb", 4096, "kernel readahead of the mount")
	fl.IntVar(&m.prefetch, "prefetch-blocks", 16, "most blocks fetched ahead of a sequential reader")
	fl.IntVar(&m.maxBG, "max-background", 64, "kernel readahead READs in flight (tuning)")
	fl.BoolVar(&m.kernelCache, "kernel-cache", true, "keep file pages cached in the kernel across opens (tuning: builds never change)")
	fl.BoolVar(&m.debug, "debug", false, "log every FUSE request")
}

func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "appliveryfs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "appliveryfs")
	}
	return filepath.Join(os.TempDir(), "appliveryfs-cache")
}

func runMount(args []string, stderr io.Writer) error {
	fl := newFlagSet("mount", "mount [flags] MOUNTPOINT", stderr)
	var conn connFlags
	var mf mountFlags
	conn.register(fl)
	mf.register(fl)
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
	return serve(client, fl.Arg(0), &mf, stderr, nil)
}

// serve checks the token, mounts, and serves until SIGINT or SIGTERM.
// ready, if set, is called once the mount is up.
func serve(client *api.Client, mountpoint string, mf *mountFlags, stderr io.Writer, ready func(dir string)) error {
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil && !errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("mountpoint: %w", err)
	} else if err == nil && !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
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

	disk, err := cache.OpenDisk(mf.cacheDir, int64(mf.diskSize))
	if err != nil {
		return fmt.Errorf("open cache dir: %w", err)
	}
	defer disk.Close()
	c, err := cache.New(cache.Config{BlockSize: int64(mf.blockSize), MemoryBytes: int64(mf.cacheSize),
		Disk: disk, IOTimeout: mf.ioTimeout, MaxAhead: mf.prefetch})
	if err != nil {
		return usageErr("%v", err)
	}
	defer c.Close()
	// Evicted blocks are garbage; a soft limit makes the runtime collect
	// them before the process outgrows the budget it was given.
	debug.SetMemoryLimit(int64(mf.cacheSize) + 48<<20)

	logger := log.New(stderr, "", log.LstdFlags)
	fsys := fs.New(fs.Config{Client: client, Cache: c, Disk: disk, Orgs: mf.orgs,
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

func runEmulator(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("emulator", "emulator [flags]", stderr)
	tokenTTL := fl.Duration("token-ttl", 5*time.Minute, "lifetime of a download token")
	urlTTL := fl.Duration("url-ttl", 15*time.Minute, "lifetime of a signed storage URL")
	latency := fl.Duration("latency", 0, "delay before the first byte of every answer")
	var bw byteSize
	fl.Var(&bw, "bandwidth", "per-connection storage bandwidth in bytes per second (e.g. 32M); 0 for unlimited")
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return usageErr("emulator takes no arguments")
	}
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	defer emu.Close()
	emu.SetTokenTTL(*tokenTTL)
	emu.SetURLTTL(*urlTTL)
	emu.SetLatency(*latency)
	emu.SetBandwidth(int64(bw))
	fmt.Fprintf(stdout, `Applivery emulator serving sample data on 127.0.0.1. Try:

  export APPLIVERY_TOKEN=%s
  appliveryfs ls --api-url %s --download-url %s
  appliveryfs ls acme/field-app --api-url %s --download-url %s
  appliveryfs mount --api-url %s --download-url %s MOUNTPOINT

Press Ctrl-C to stop.
`, emu.Token(), emu.APIURL(), emu.DownloadURL(), emu.APIURL(), emu.DownloadURL(), emu.APIURL(), emu.DownloadURL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("demo", "demo [flags] [MOUNTPOINT]", stderr)
	var mf mountFlags
	mf.register(fl)
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		return usageErr("demo takes at most one MOUNTPOINT")
	}
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	defer emu.Close()
	if !fl.Changed("cache-dir") {
		tmp, err := os.MkdirTemp("", "appliveryfs-demo-cache-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		mf.cacheDir = tmp
	}
	mnt := fl.Arg(0)
	if mnt == "" {
		tmp, err := os.MkdirTemp("", "appliveryfs-demo-")
		if err != nil {
			return err
		}
		defer os.Remove(tmp)
		mnt = tmp
	}
	client, err := api.NewClient(api.Config{APIURL: emu.APIURL(), DownloadURL: emu.DownloadURL(), Token: emu.Token()})
	if err != nil {
		return err
	}
	return serve(client, mnt, &mf, stderr, func(dir string) {
		fmt.Fprintf(stdout, `The Applivery emulator's sample data is mounted on %[1]s. In another shell, try:

  ls -l %[1]s/acme/field-app
  cat %[1]s/acme/field-app/latest/info.json
  cp %[1]s/acme/field-app/latest/file /tmp/field-app.apk
  unzip -l %[1]s/acme/field-ios/latest/file.ipa
  rsync -a %[1]s/acme/ /tmp/acme-builds/

Press Ctrl-C to unmount and stop.
`, dir)
	})
}
