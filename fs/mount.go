package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions tunes the kernel side of a mount.
type MountOptions struct {
	FsName        string // the mount's source as /proc/mounts shows it; default "appliveryfs"
	AllowOther    bool   // let users other than the mounting one read
	AllowNonEmpty bool   // mount over a directory that has files, hiding them
	ReadAheadKB   int    // kernel readahead for the mount; 0 means 4096
	// MaxBackground caps the kernel's asynchronous (readahead) READs in
	// flight; 0 means 64. The kernel's own default of 12 starves prefetch.
	MaxBackground int
	Debug         bool // log every FUSE request
}

// fuseDevice is where the kernel's FUSE driver is reached.
const fuseDevice = "/dev/fuse"

// CanMount checks, before anything else is done, that this process can
// mount at all: the FUSE device, and for a user other than root the
// fusermount3 helper and, for allowOther, user_allow_other in
// /etc/fuse.conf. The error names what is missing and what provides it.
func CanMount(allowOther bool) error {
	if _, err := os.Stat(fuseDevice); errors.Is(err, os.ErrNotExist) {
		return errors.New("no " + fuseDevice + ": the FUSE kernel module is not loaded (modprobe fuse) " +
			"or, in a container, the device was not passed in (docker run --device /dev/fuse --cap-add SYS_ADMIN)")
	}
	if os.Geteuid() == 0 {
		return nil
	}
	// fusermount3 opens the device with the user's own rights.
	if err := unix.Access(fuseDevice, unix.R_OK|unix.W_OK); err != nil {
		return fmt.Errorf("%s: %w: this user may not open it (it is usually mode 0666; "+
			"in a container, pass --device /dev/fuse)", fuseDevice, err)
	}
	if _, err := fusermount(); err != nil {
		return errors.New("no fusermount3: a user other than root mounts through it; install the fuse3 package")
	}
	if allowOther && !userAllowOther("/etc/fuse.conf") {
		return errors.New("--allow-other needs user_allow_other in /etc/fuse.conf")
	}
	return nil
}

// fusermount finds the helper as go-fuse does: PATH, then /bin.
func fusermount() (string, error) {
	if p, err := exec.LookPath("fusermount3"); err == nil {
		return p, nil
	}
	return exec.LookPath("/bin/fusermount3")
}

// userAllowOther reports whether the fuse.conf at path has a
// user_allow_other line.
func userAllowOther(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// CheckMountpoint fails with a clear message where mounting on dir would
// hide data or stack mounts: dir missing, not a directory, already a
// mountpoint, or holding files (unless allowNonEmpty). A dead mount of
// ours, left by a daemon that was killed, is detached so that this one
// takes its place.
func CheckMountpoint(dir string, allowNonEmpty bool) error {
	if err := detachDead(dir); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	if fstype, ok, err := mountedAt(dir); err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	} else if ok {
		return fmt.Errorf("mountpoint %s is already mounted (%s): unmount it first", dir, fstype)
	}
	if !allowNonEmpty {
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("mountpoint: %w", err)
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 {
			return fmt.Errorf("mountpoint %s is not empty: mounting would hide its files "+
				"(pass --allow-non-empty, or -o allow_non_empty, to mount over them)", dir)
		}
	}
	return nil
}

// detachDead detaches a mount of appliveryfs on dir whose daemon is gone.
// The kernel may answer stat from its cache even then; statfs always asks
// the daemon, and a dead connection answers ENOTCONN.
func detachDead(dir string) error {
	fstype, ok, err := mountedAt(dir)
	if err != nil || !ok || !strings.HasPrefix(fstype, "fuse") {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); !errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	if fstype != "fuse.appliveryfs" {
		return fmt.Errorf("mountpoint %s holds a dead mount of another filesystem (%s): unmount it first (umount -l)", dir, fstype)
	}
	if err := detach(dir); err != nil {
		return fmt.Errorf("mountpoint %s holds a dead mount and detaching it failed: %w", dir, err)
	}
	return nil
}

// IsMounted reports whether dir is a mountpoint.
func IsMounted(dir string) (bool, error) {
	_, ok, err := mountedAt(dir)
	return ok, err
}

// Mount mounts fsys on dir and returns once the mount serves requests.
// Root mounts with mount(2) directly and never falls back; any other user
// mounts through fusermount3. Which one failed is in the error.
func Mount(dir string, fsys *FS, mo MountOptions) (*fuse.Server, error) {
	if err := CanMount(mo.AllowOther); err != nil {
		return nil, err
	}
	if err := CheckMountpoint(dir, mo.AllowNonEmpty); err != nil {
		return nil, err
	}
	maxBackground := mo.MaxBackground
	if maxBackground <= 0 {
		maxBackground = 64
	}
	name := mo.FsName
	if name == "" {
		name = "appliveryfs"
	}
	root := os.Geteuid() == 0
	// Short negative entries: a build looked up a moment before it is
	// processed should appear soon after, not a whole listing TTL later.
	neg := min(fsys.cfg.DirTTL, 5*time.Second)
	dirTTL := fsys.cfg.DirTTL
	opts := &gofs.Options{
		// Explicit timeouts: a non-nil Options with nil pointers means 0 s,
		// which turns every path walk into LOOKUPs.
		EntryTimeout:    &dirTTL,
		AttrTimeout:     &dirTTL,
		NegativeTimeout: &neg,
		UID:             fsys.cfg.UID,
		GID:             fsys.cfg.GID,
		MountOptions: fuse.MountOptions{
			FsName:            name,
			Name:              "appliveryfs",
			DirectMount:       root,
			DirectMountStrict: root,
			DirectMountFlags:  directMountFlags,
			Options:           []string{"ro"},
			AllowOther:        mo.AllowOther,
			MaxWrite:          1 << 20, // also max_read and max_pages: 1 MiB READs
			MaxBackground:     maxBackground,
			DisableSplice:     true, // data comes from memory; splice only adds a failing attempt per READ
			DisableXAttrs:     true,
			// IgnoreSecurityLabels spares a GETXATTR per file for security.* labels.
			IgnoreSecurityLabels: true,
			Debug:                mo.Debug,
		},
	}
	srv, err := gofs.Mount(dir, fsys.Root(), opts)
	if err != nil {
		how := "mount(2)"
		if !root {
			how = "fusermount3"
		}
		return nil, fmt.Errorf("mount on %s with %s: %w", dir, how, err)
	}
	ra := mo.ReadAheadKB
	if ra <= 0 {
		ra = 4096
	}
	if err := setReadAhead(dir, ra); err != nil {
		// Only root may raise it: for anyone else this is expected, and
		// prefetch does not depend on it (it only makes READs larger).
		fsys.cfg.Log.Debug("readahead stays at the kernel's 128 KiB", "err", err.Error())
	}
	return srv, nil
}

// Unmount detaches the mount at once, lazily: a mount nothing holds is
// gone at once, and one with files open leaves the tree while they
// finish. It returns without waiting for those; srv.Wait does.
func Unmount(srv *fuse.Server, dir string) error {
	if err := detach(dir); err != nil {
		if uerr := srv.Unmount(); uerr != nil {
			return fmt.Errorf("unmount %s: %v; lazy unmount: %w", dir, uerr, err)
		}
	}
	return nil
}

// detach lazily unmounts dir: with umount2(MNT_DETACH) as root, through
// fusermount3 -u -z otherwise.
func detach(dir string) error {
	if os.Geteuid() == 0 {
		return lazyUnmount(dir)
	}
	bin, err := fusermount()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-u", "-z", dir)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -u -z: %v: %s", filepath.Base(bin), err, strings.TrimSpace(string(out)))
	}
	return nil
}
