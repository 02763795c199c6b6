package fs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// directMountFlags are the flags of a mount(2) by root; fusermount3 sets
// the same for other users.
const directMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY

func lazyUnmount(dir string) error { return unix.Unmount(dir, unix.MNT_DETACH) }

// mountedAt looks dir up in /proc/self/mountinfo and returns the type of
// what is mounted there.
func mountedAt(dir string) (fstype string, ok bool, err error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// Field 5 is the mountpoint (space, tab, newline and backslash
		// octal-escaped); the type follows the " - " separator.
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		fstype = "unknown type"
		for i, s := range f {
			if s == "-" && i+1 < len(f) {
				fstype = f[i+1]
			}
		}
		ok = true // the last line for dir is what is visible there
	}
	return fstype, ok, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
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

// setReadAhead raises the kernel readahead of the mount's backing device:
// MaxReadAhead can only lower the kernel's 128 KiB, and READs are never
// larger than the readahead window. Only root may write it.
func setReadAhead(dir string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(strconv.Itoa(kb)), 0)
}
