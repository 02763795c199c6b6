package fs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions tunes the kernel side of a mount.
type MountOptions struct {
	AllowOther  bool // let users other than the mounting one read
	ReadAheadKB int  // kernel readahead for the mount; 0 means 4096
	// MaxBackground caps the kernel's asynchronous (readahead) READs in
	// flight; 0 means 64. The kernel's own default of 12 starves prefetch.
	MaxBackground int
	Debug         bool // log every FUSE request
}

// Mount mounts fsys on dir and returns once the mount serves requests.
// It never falls back to fusermount: root mounts directly, or fails.
func Mount(dir string, fsys *FS, mo MountOptions) (*fuse.Server, error) {
	if err := checkMountpoint(dir); err != nil {
		return nil, err
	}
	maxBackground := mo.MaxBackground
	if maxBackground <= 0 {
		maxBackground = 64
	}
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
			FsName:            "appliveryfs",
			Name:              "appliveryfs",
			DirectMount:       true,
			DirectMountStrict: true,
			DirectMountFlags:  syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY,
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
		return nil, fmt.Errorf("mount on %s: %w", dir, err)
	}
	ra := mo.ReadAheadKB
	if ra <= 0 {
		ra = 4096
	}
	if err := setReadAhead(dir, ra); err != nil {
		fsys.cfg.Log.Printf("appliveryfs: could not raise readahead (reads stay at 128 KiB): %v", err)
	}
	return srv, nil
}

// checkMountpoint fails early with a clear message, and detaches a mount
// left dead by a crashed daemon so this one can take its place.
func checkMountpoint(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, syscall.ENOTCONN) {
		if uerr := syscall.Unmount(dir, syscall.MNT_DETACH); uerr != nil {
			return fmt.Errorf("mountpoint %s holds a dead mount and detaching it failed: %w", dir, uerr)
		}
		st, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	return nil
}

// setReadAhead raises the kernel readahead of the mount's backing device:
// MaxReadAhead can only lower the kernel's 128 KiB, and READs are never
// larger than the readahead window.
func setReadAhead(dir string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	return os.WriteFile(p, []byte(strconv.Itoa(kb)), 0)
}

// IsMounted reports whether dir is a mountpoint, as /proc/self/mountinfo
// lists it.
func IsMounted(dir string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// Field 5 is the mountpoint, with space, tab, newline and
		// backslash octal-escaped.
		if f := strings.Fields(line); len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			return true, nil
		}
	}
	return false, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Unmount unmounts srv, lazily if something still holds the mount busy
// after a few seconds, so that no stale mount outlives the process.
func Unmount(srv *fuse.Server, dir string) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := srv.Unmount()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: %v; lazy unmount: %w", dir, err, derr)
			}
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}
