//go:build linux

// Package integration tests appliveryfs through real mounts with real
// tools (cp, rsync, sha256sum, unzip) against the emulator.
package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/cache/disk"
	"github.com/appliveryfs/appliveryfs/fs"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

var binPath string // the appliveryfs binary, built once by TestMain

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests mount FUSE filesystems and need root")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "appliveryfs-bin-")
	if err != nil {
		log.Fatal(err)
	}
	binPath = filepath.Join(dir, "appliveryfs")
	build := exec.Command("go", "build", "-o", binPath, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("build appliveryfs: %v", err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startEmulator serves data (nil: the sample data) until the test ends.
func startEmulator(t *testing.T, data *emulator.Dataset) *emulator.Server {
	t.Helper()
	emu, err := emulator.Start(emulator.Options{Data: data})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(emu.Close)
	return emu
}

type mountConfig struct {
	blockSize int64
	memBytes  int64
	diskBytes int64 // 0: no disk cache blocks
	cacheDir  string
	ioTimeout time.Duration
	prefetch  int
	dirTTL    time.Duration
	orgs      []string
	uid, gid  uint32
	token     string // "" for the emulator's own
}

// mounted is a live mount of the filesystem, served in this process.
type mounted struct {
	t     *testing.T
	dir   string
	srv   *fuse.Server
	cache *cache.Cache
	disk  *disk.Cache
	done  bool
}

// mount mounts the emulator's data; the mount is always unmounted when the
// test ends, pass or fail.
func mount(t *testing.T, emu *emulator.Server, mc mountConfig) *mounted {
	t.Helper()
	dir := t.TempDir() // before the unmount cleanup, so that runs first
	if mc.cacheDir == "" {
		mc.cacheDir = t.TempDir()
	}
	if mc.ioTimeout == 0 {
		mc.ioTimeout = 20 * time.Second
	}
	if mc.prefetch == 0 {
		mc.prefetch = 16 // the mount's default; -1 turns it off
	} else if mc.prefetch < 0 {
		mc.prefetch = 0
	}
	if mc.dirTTL == 0 {
		mc.dirTTL = time.Minute
	}
	if mc.token == "" {
		mc.token = emu.Token()
	}
	client, err := api.NewClient(api.Config{APIURL: emu.APIURL(), DownloadURL: emu.DownloadURL(), Token: mc.token})
	if err != nil {
		t.Fatal(err)
	}
	store, err := disk.Open(mc.cacheDir, mc.diskBytes)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Config{BlockSize: mc.blockSize, MemoryBytes: mc.memBytes, Store: store,
		IOTimeout: mc.ioTimeout, MaxAhead: mc.prefetch})
	if err != nil {
		t.Fatal(err)
	}
	fsys := fs.New(fs.Config{Client: client, Cache: c, Sizes: store, UID: mc.uid, GID: mc.gid, Orgs: mc.orgs,
		DirTTL: mc.dirTTL, IOTimeout: mc.ioTimeout, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	srv, err := fs.Mount(dir, fsys, fs.MountOptions{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	m := &mounted{t: t, dir: dir, srv: srv, cache: c, disk: store}
	t.Cleanup(m.unmount)
	return m
}

func (m *mounted) unmount() {
	if m.done {
		return
	}
	m.done = true
	if err := fs.Unmount(m.srv, m.dir); err != nil {
		m.t.Errorf("unmount %s: %v", m.dir, err)
	}
	m.srv.Wait()
	m.cache.Close()
	m.disk.Close()
	if isMounted(m.dir) {
		m.t.Errorf("%s still mounted", m.dir)
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
	}
}

func (m *mounted) path(parts ...string) string {
	return filepath.Join(append([]string{m.dir}, parts...)...)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func isMounted(dir string) bool {
	m, _ := fs.IsMounted(dir)
	return m
}

// run runs a tool outside the mount (never with its working directory on
// the mount: that can deadlock a test that serves the mount itself).
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = os.TempDir()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sha256sumOf runs sha256sum on a file and returns the digest.
func sha256sumOf(t *testing.T, path string) string {
	t.Helper()
	out := run(t, "sha256sum", path)
	return strings.Fields(out)[0]
}

// expectedFile is one file the contract says a build directory holds.
type expectedFile struct {
	org, app *emulator.Org
	appData  *emulator.App
	build    *emulator.Build
	typ      string
	name     string // e.g. file.ipa
	data     []byte
}

// expectedFiles lists every build file of the data, per the tree contract.
func expectedFiles(emu *emulator.Server) []expectedFile {
	var out []expectedFile
	for _, f := range emu.TreeFiles() {
		out = append(out, expectedFile{org: f.Org, appData: f.App, build: f.Build, typ: f.Type, name: f.Name, data: f.Data})
	}
	return out
}

func (e expectedFile) path(mnt string) string {
	return filepath.Join(mnt, e.org.Slug, e.appData.Slug, e.build.ID, e.name)
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}
