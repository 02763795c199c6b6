//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// Tests of running the mount the way people run mounts: in the
// background, as another user, from mount(8), under systemd, and of
// stopping it. Each mounts with the binary, never in this process.

const nobody = 65534

// hostArgs are the connection flags for the emulator.
func hostArgs(emu *emulator.Server) []string {
	return []string{"--api-url", emu.APIURL(), "--download-url", emu.DownloadURL()}
}

// mountpoint returns an empty directory that is unmounted (lazily, if it
// must) when the test ends, pass or fail.
func mountpoint(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { detachIfMounted(t, dir) })
	return dir
}

func detachIfMounted(t *testing.T, dir string) {
	if isMounted(dir) {
		t.Errorf("%s left mounted", dir)
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}
}

// mountPIDs returns the appliveryfs processes serving dir.
func mountPIDs(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || processGone(pid) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) > 1 && filepath.Base(args[0]) == "appliveryfs" && args[len(args)-1] == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processGone reports whether pid has exited. A background process is
// reparented to PID 1, which may never reap it: a zombie has exited too.
func processGone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) == 0 || f[0] == "Z" || f[0] == "X"
}

// waitGone waits up to d for pid to exit.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still running %s later", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemonPID returns the one background process serving dir.
func daemonPID(t *testing.T, dir string) int {
	t.Helper()
	pids := mountPIDs(dir)
	if len(pids) != 1 {
		t.Fatalf("%d processes serve %s, want 1", len(pids), dir)
	}
	pid := pids[0]
	t.Cleanup(func() {
		if !processGone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// startForeground starts `appliveryfs mount ARGS` in the foreground and
// waits until dir is mounted.
func startForeground(t *testing.T, env []string, dir string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binPath, append(append([]string{"mount"}, args...), dir)...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for !isMounted(dir) {
		if time.Now().After(deadline) {
			t.Fatalf("not mounted after 10 s: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, &stderr
}

// waitExit waits up to d for cmd and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		cmd.Process.Kill()
		t.Fatalf("still running %s later", d)
		return -1
	}
}

// holdOpen keeps path open in a child process until the test ends, as a
// shell in the mount or a slow reader would.
func holdOpen(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", `exec 3<"$1"; echo open; exec sleep 60`, "sh", path)
	cmd.Dir = os.TempDir()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf[:4]) != "open" {
		t.Fatalf("could not open %s: %v", path, err)
	}
}

func TestDaemon(t *testing.T) {
	emu := startEmulator(t, nil)
	mnt := mountpoint(t)
	logFile := filepath.Join(t.TempDir(), "daemon.log")
	args := append([]string{"mount", "--daemon", "--cache-dir", t.TempDir(), "--log-file", logFile}, hostArgs(emu)...)

	// A rejected token: the command says so, and nothing is mounted.
	_, errOut, code := cli(t, "wrong", append(args, mnt)...)
	if code == 0 || !strings.Contains(errOut, "401") || isMounted(mnt) || len(mountPIDs(mnt)) != 0 {
		t.Fatalf("--daemon with a wrong token: exit %d, mounted %v, stderr %q", code, isMounted(mnt), errOut)
	}

	_, errOut, code = cli(t, emu.Token(), append(args, mnt)...)
	if code != 0 {
		t.Fatalf("--daemon: exit %d: %s", code, errOut)
	}
	// Ready means ready: no polling needed.
	if !isMounted(mnt) {
		t.Fatal("--daemon returned before the mount was up")
	}
	ef := expectedFiles(emu)[0]
	if got := sha256sumOf(t, ef.path(mnt)); got != sha256Hex(ef.data) {
		t.Errorf("file through the daemon: sha256 %s, want %s", got, sha256Hex(ef.data))
	}
	pid := daemonPID(t, mnt)
	// The token is in neither the background process's command line nor,
	// since it came from the environment, anywhere ps shows other users.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if bytes.Contains(cmdline, []byte(emu.Token())) {
		t.Errorf("the service token is on the background process's command line: %q", cmdline)
	}
	for _, fd := range []string{"0", "1", "2"} {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd)); target != "/dev/null" {
			t.Errorf("background process fd %s is %q, want /dev/null", fd, target)
		}
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); cwd != "/" {
		t.Errorf("background process works in %s, want /: it would keep that filesystem busy", cwd)
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "msg=mounted dir="+mnt) {
		t.Errorf("--log-file lacks the mount line:\n%s", b)
	}

	// A second mount on a live one: refused, the first one untouched.
	_, errOut, code = cli(t, emu.Token(), append(args, mnt)...)
	if code == 0 || !strings.Contains(errOut, "already mounted") || len(mountPIDs(mnt)) != 1 {
		t.Errorf("second --daemon on a live mount: exit %d, stderr %q, %d processes", code, errOut, len(mountPIDs(mnt)))
	}

	// umount from outside: the background process exits.
	run(t, "umount", mnt)
	waitGone(t, pid, 10*time.Second)
	if isMounted(mnt) {
		t.Error("still mounted after umount")
	}
}

func TestMountRefusals(t *testing.T) {
	emu := startEmulator(t, nil)
	base := append([]string{"mount", "--daemon", "--cache-dir", t.TempDir()}, hostArgs(emu)...)

	// Another filesystem mounted there.
	other := mountpoint(t)
	run(t, "mount", "-t", "tmpfs", "tmpfs", other)
	t.Cleanup(func() { syscall.Unmount(other, syscall.MNT_DETACH) })
	_, errOut, code := cli(t, emu.Token(), append(base, other)...)
	if code == 0 || !strings.Contains(errOut, "already mounted (tmpfs)") {
		t.Errorf("mount over a tmpfs: exit %d, stderr %q", code, errOut)
	}
	syscall.Unmount(other, 0)

	// A directory with files: refused, naming the flag; the flag allows it.
	full := mountpoint(t)
	if err := os.WriteFile(filepath.Join(full, "keep-me"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = cli(t, emu.Token(), append(base, full)...)
	if code == 0 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "--allow-non-empty") || isMounted(full) {
		t.Errorf("mount over files: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code = cli(t, emu.Token(), append(append(base, "--allow-non-empty"), full)...); code != 0 || !isMounted(full) {
		t.Fatalf("--allow-non-empty: exit %d, stderr %q", code, errOut)
	}
	pid := daemonPID(t, full)

	// A dead mount of ours (its process killed) is replaced.
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 5*time.Second)
	// The kernel aborts the connection as the process's descriptors close.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := os.Stat(filepath.Join(full, "acme"))
		if errorsIsENOTCONN(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat in a mount whose process was killed: %v, want ENOTCONN", err)
		}
	}
	if _, errOut, code = cli(t, emu.Token(), append(append(base, "--allow-non-empty"), full)...); code != 0 {
		t.Fatalf("mount on a dead mount: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(full, "acme")); err != nil {
		t.Errorf("the replacing mount does not serve: %v", err)
	}
	pid = daemonPID(t, full)
	run(t, "umount", full)
	waitGone(t, pid, 10*time.Second)
	if b, err := os.ReadFile(filepath.Join(full, "keep-me")); err != nil || string(b) != "x" {
		t.Errorf("the hidden file after unmount: %q, %v", b, err)
	}

	// No /dev/fuse (a container started without --device /dev/fuse).
	mnt := mountpoint(t)
	cmd := exec.Command("unshare", append([]string{"--mount", "sh", "-c",
		`mount -t tmpfs tmpfs /dev && exec "$0" "$@"`, binPath}, append(base, mnt)...)...)
	cmd.Env = append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token())
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no /dev/fuse") || !strings.Contains(string(out), "--device /dev/fuse") ||
		strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("mount without /dev/fuse: %v, want one line naming the device flag:\n%s", err, out)
	}
}

func errorsIsENOTCONN(err error) bool {
	var errno syscall.Errno
	if pe, ok := err.(*os.PathError); ok {
		errno, _ = pe.Err.(syscall.Errno)
	}
	return errno == syscall.ENOTCONN
}

// asNobody runs a command as an unprivileged user in a mount namespace of
// its own, after setup (shell commands run as root in that namespace): for
// what must fail before mounting, since a mount made there is not seen here.
func asNobody(setup string, env []string, name string, args ...string) *exec.Cmd {
	script := setup + `; exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", name}, args...)...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// unprivileged sets up what an unprivileged mount needs and a test of it
// would otherwise lack: a directory tree that user owns, the binary where
// it may run it, a token file, and /dev/fuse open to it for the test
// (Debian's fuse3 makes it 0666; this machine may not), restored after.
func unprivileged(t *testing.T, token string) (dir, bin, tokenFile string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "appliveryfs-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin = filepath.Join(dir, "appliveryfs")
	tokenFile = filepath.Join(dir, "token")
	run(t, "cp", binPath, bin)
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"mnt", "cache", "out"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "chown", "-R", fmt.Sprintf("%d:%d", nobody, nobody), dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", mode|0o006); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", mode) })
	}
	mnt := filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		if isMounted(mnt) {
			t.Errorf("%s left mounted", mnt)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	return dir, bin, tokenFile
}

func TestUnprivilegedMount(t *testing.T) {
	data, big := bigIPAData(t, 32<<20, 50)
	emu := startEmulator(t, data)
	dir, bin, tokenFile := unprivileged(t, emu.Token())
	mnt := filepath.Join(dir, "mnt")
	// In this mount namespace: a mount made in another would not be seen here.
	user := func(name string, args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", name}, args...)...)
		cmd.Dir = "/"
		cmd.Env = append(os.Environ(), "HOME=/nonexistent")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mountArgs := append([]string{"mount", "--daemon", "--token-file", tokenFile, "--cache-dir", filepath.Join(dir, "cache"),
		"--log-file", filepath.Join(dir, "log")}, hostArgs(emu)...)
	if out, err := user(bin, append(mountArgs, mnt)...); err != nil {
		t.Fatalf("mount as uid %d: %v\n%s", nobody, err, out)
	}
	if fields := strings.Fields(mountLine(mnt)); len(fields) < 4 || !strings.Contains(fields[3], fmt.Sprintf("user_id=%d", nobody)) {
		t.Errorf("mount line %q: not mounted by uid %d through fusermount3", mountLine(mnt), nobody)
	}
	pid := daemonPID(t, mnt)

	want, _ := emu.Object(big.ID, "file")
	src := filepath.Join(mnt, "acme/field-ios", big.ID, "file.ipa")
	copied := filepath.Join(dir, "out", "big.ipa")
	if out, err := user("cp", src, copied); err != nil {
		t.Fatalf("cp as uid %d: %v\n%s", nobody, err, out)
	}
	if got, err := os.ReadFile(copied); err != nil || !bytes.Equal(got, want) {
		t.Errorf("cp as uid %d: %d bytes, want %d, same bytes %v", nobody, len(got), len(want), bytes.Equal(got, want))
	}
	if out, err := user("rsync", "-a", filepath.Join(mnt, "acme/field-app")+"/", filepath.Join(dir, "out", "rsync")+"/"); err != nil {
		t.Errorf("rsync as uid %d: %v\n%s", nobody, err, out)
	}
	if target, err := os.Readlink(filepath.Join(dir, "out", "rsync", "latest")); err != nil || target == "" {
		t.Errorf("rsync -a did not keep latest as a symlink: %q %v", target, err)
	}
	if out, err := user("fusermount3", "-u", mnt); err != nil {
		t.Fatalf("fusermount3 -u as uid %d: %v\n%s", nobody, err, out)
	}
	waitGone(t, pid, 10*time.Second)
	// Without root the kernel's readahead stays at 128 KiB, which is
	// expected and not worth a warning; the copy still prefetched blocks
	// ahead of the reader, in parallel.
	logb, _ := os.ReadFile(filepath.Join(dir, "log"))
	if strings.Contains(string(logb), "readahead") {
		t.Errorf("a readahead message without --debug, for a user who cannot raise it:\n%s", logb)
	}
	var fetched, prefetched int
	if m := regexp.MustCompile(`fetched in (\d+) blocks`).FindStringSubmatch(string(logb)); m != nil {
		fetched, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`prefetch: +(\d+) blocks`).FindStringSubmatch(string(logb)); m != nil {
		prefetched, _ = strconv.Atoi(m[1])
	}
	// 8 blocks of 4 MiB: all but the first should come ahead of the reader.
	if fetched < 8 || prefetched < 5 {
		t.Errorf("fetched %d blocks, %d of them prefetched: want most of the copy's 8 prefetched\n%s", fetched, prefetched, logb)
	}

	// --allow-other needs user_allow_other in fuse.conf; without it, the
	// error says so (a fuse.conf without the line, in a namespace).
	conf := filepath.Join(t.TempDir(), "fuse.conf")
	os.WriteFile(conf, []byte("# user_allow_other\n"), 0o644)
	cmd := asNobody("mount --bind "+conf+" /etc/fuse.conf", []string{"HOME=/nonexistent"}, bin,
		append(append(mountArgs, "--allow-other"), mnt)...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--allow-other needs user_allow_other in /etc/fuse.conf") {
		t.Errorf("--allow-other as uid %d without user_allow_other: %v\n%s", nobody, err, out)
	}
	// No fusermount3: one line naming the package.
	cmd = asNobody("mount --bind /dev/null $(command -v fusermount3)", []string{"HOME=/nonexistent"}, bin, append(mountArgs, mnt)...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no fusermount3") || !strings.Contains(string(out), "fuse3") {
		t.Errorf("mount as uid %d without fusermount3: %v\n%s", nobody, err, out)
	}
	if isMounted(mnt) {
		t.Error("a refused mount left something mounted")
	}
}

// mountLine is dir's line in /proc/mounts.
func mountLine(dir string) string {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return line
		}
	}
	return ""
}

func TestStopInBoundedTime(t *testing.T) {
	emu := startEmulator(t, nil)
	env := []string{"APPLIVERY_TOKEN=" + emu.Token()}
	args := append([]string{"--cache-dir", t.TempDir()}, hostArgs(emu)...)
	info := "acme/field-app/latest/info.json"

	// SIGTERM with a file open: detached at once, gone after --stop-timeout.
	mnt := mountpoint(t)
	cmd, stderr := startForeground(t, env, mnt, append(args, "--stop-timeout", "1s")...)
	holdOpen(t, filepath.Join(mnt, info))
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	if isMounted(mnt) {
		t.Error("still mounted 200 ms after SIGTERM: the mount should be detached at once")
	}
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM: %s", code, stderr)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("exited %s after SIGTERM with a file open, want about --stop-timeout (1s)", d)
	}

	// A second signal exits at once, whatever --stop-timeout says.
	mnt = mountpoint(t)
	cmd, stderr = startForeground(t, env, mnt, append(args, "--stop-timeout", "1m")...)
	holdOpen(t, filepath.Join(mnt, info))
	start = time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d after two signals: %s", code, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exited %s after a second signal, want at once", d)
	}

	// Unmounted from outside: exit 0.
	mnt = mountpoint(t)
	cmd, stderr = startForeground(t, env, mnt, args...)
	run(t, "umount", mnt)
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d after umount from outside: %s", code, stderr)
	}
}

func TestMountHelper(t *testing.T) {
	emu := startEmulator(t, nil)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(emu.Token()), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("token_file=%s,api_url=%s,download_url=%s,cache_dir=%s,_netdev,nofail",
		tokenFile, emu.APIURL(), emu.DownloadURL(), t.TempDir())
	ef := expectedFiles(emu)[0]
	check := func(how, mnt string) {
		t.Helper()
		if !isMounted(mnt) {
			t.Fatalf("%s returned before the mount was up", how)
		}
		if got := sha256sumOf(t, ef.path(mnt)); got != sha256Hex(ef.data) {
			t.Errorf("%s: wrong bytes", how)
		}
		pid := daemonPID(t, mnt)
		run(t, "umount", mnt)
		waitGone(t, pid, 10*time.Second)
	}

	// mount(8) with the fuse.appliveryfs type: mount.fuse3 runs
	// `appliveryfs` from the standard PATH, which mount(8) resets, so the
	// binary must be on it for this test.
	link := "/usr/local/bin/appliveryfs"
	if _, err := os.Lstat(link); err == nil {
		t.Skipf("%s exists: not replacing an installed appliveryfs", link)
	}
	if err := os.Symlink(binPath, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
	mnt := mountpoint(t)
	out, err := exec.Command("env", "-u", "APPLIVERY_TOKEN", "mount", "-t", "fuse.appliveryfs", "-o", opts, "appliveryfs", mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("mount -t fuse.appliveryfs: %v\n%s", err, out)
	}
	if line := mountLine(mnt); !strings.HasPrefix(line, "appliveryfs "+mnt+" fuse.appliveryfs ro,nosuid,nodev") {
		t.Errorf("mount line %q, want source appliveryfs, type fuse.appliveryfs, ro,nosuid,nodev", line)
	}
	check("mount -t fuse.appliveryfs", mnt)

	// As mount.appliveryfs, the name mount(8) runs from /sbin.
	helper := filepath.Join(t.TempDir(), "mount.appliveryfs")
	if err := os.Symlink(binPath, helper); err != nil {
		t.Fatal(err)
	}
	mnt = mountpoint(t)
	if out, err := exec.Command(helper, "builds", mnt, "-o", "rw,"+opts).CombinedOutput(); err != nil {
		t.Fatalf("mount.appliveryfs: %v\n%s", err, out)
	}
	if f := strings.Fields(mountLine(mnt)); len(f) < 4 || f[0] != "builds" || !strings.HasPrefix(f[3], "ro,") {
		t.Errorf("mount line %q: want source builds, read-only although mount(8) said rw", mountLine(mnt))
	}
	check("mount.appliveryfs", mnt)

	// An option it does not know: refused, nothing mounted.
	mnt = mountpoint(t)
	out, err = exec.Command(helper, "builds", mnt, "-o", opts+",cache_mb=5").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown option "cache_mb=5"`) || isMounted(mnt) {
		t.Errorf("unknown mount option: %v\n%s", err, out)
	}
}

func TestSystemd(t *testing.T) {
	emu := startEmulator(t, nil)
	sockPath := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	cacheDir := t.TempDir()
	mnt := mountpoint(t)
	// What a Type=notify unit with CacheDirectory= gives the process; the
	// connection comes from the environment too, as a unit would set it.
	env := []string{"APPLIVERY_TOKEN=" + emu.Token(), "NOTIFY_SOCKET=" + sockPath, "CACHE_DIRECTORY=" + cacheDir,
		"APPLIVERY_API_URL=" + emu.APIURL(), "APPLIVERY_DOWNLOAD_URL=" + emu.DownloadURL()}
	cmd, stderr := startForeground(t, env, mnt)
	readState := func(want string) {
		t.Helper()
		sock.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := sock.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), want) {
			t.Fatalf("notify socket: %q, %v; want %s", buf[:n], err, want)
		}
	}
	readState("READY=1")
	ef := expectedFiles(emu)[0]
	run(t, "cat", ef.path(mnt))
	cmd.Process.Signal(syscall.SIGTERM)
	readState("STOPPING=1")
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if ents, err := os.ReadDir(filepath.Join(cacheDir, "v1", "blocks", ef.build.ID)); err != nil || len(ents) == 0 {
		t.Errorf("no blocks in $CACHE_DIRECTORY (%s): %v", cacheDir, err)
	}

	// The example unit is one systemd accepts (with this binary in it).
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not installed (.ci/run installs systemd)")
	}
	unit, err := os.ReadFile("../dist/systemd/appliveryfs.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("Type=notify")) || !bytes.Contains(unit, []byte("CacheDirectory=")) {
		t.Error("the example unit is not Type=notify with a CacheDirectory=")
	}
	unitDir := t.TempDir()
	unitPath := filepath.Join(unitDir, "appliveryfs.service")
	os.WriteFile(unitPath, bytes.ReplaceAll(unit, []byte("/usr/local/bin/appliveryfs"), []byte(binPath)), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
