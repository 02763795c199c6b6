//go:build unix

package disk

import (
	"io/fs"
	"syscall"
)

// fileID tells hard links to one file apart from distinct files.
type fileID struct{ dev, ino uint64 }

// allocated returns the bytes the file system allocated to a file, as du(1)
// counts them (st_blocks of 512 bytes: a sparse file counts less than its
// length, a small one a whole file system block), and, for a file with more
// than one link, its identity so that it is counted once.
func allocated(info fs.FileInfo) (n int64, id fileID, linked bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return info.Size(), fileID{}, false
	}
	return int64(st.Blocks) * 512, fileID{uint64(st.Dev), uint64(st.Ino)}, !info.IsDir() && st.Nlink > 1
}
