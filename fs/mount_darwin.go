package fs

import (
	"golang.org/x/sys/unix"
)

// directMountFlags: macFUSE mounts through its own helper, never mount(2).
const directMountFlags = 0

// lazyUnmount: macOS has no lazy detach; a forced unmount is the nearest.
func lazyUnmount(dir string) error { return unix.Unmount(dir, unix.MNT_FORCE) }

// mountedAt reports whether dir is the root of a mounted filesystem.
func mountedAt(dir string) (fstype string, ok bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false, err
	}
	if unix.ByteSliceToString(st.Mntonname[:]) != dir {
		return "", false, nil
	}
	return unix.ByteSliceToString(st.Fstypename[:]), true, nil
}

// setReadAhead: macFUSE has no per-mount readahead knob to raise.
func setReadAhead(dir string, kb int) error { return nil }
