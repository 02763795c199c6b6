package disk

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// Block files are read and written with O_DIRECT where the file system
// allows it. The mount's memory cache already holds each block it writes,
// and the kernel's page cache of the mount holds the pages it served: a
// third copy in the page cache of the cache directory cost more CPU than
// anything else on a cold read (55% of the mount's CPU time in a profile
// of a 256 MiB copy, the kernel copying 4 MiB writes into fresh page-cache
// pages), and a remount read the blocks through it only once.

// directAlign is the alignment O_DIRECT asks of buffers, lengths and file
// offsets: the logical block size of every disk in common use, or a
// multiple of it.
const directAlign = 4096

// SetDirectIO makes block files be read and written bypassing the page
// cache, when the platform has O_DIRECT. A file system that refuses it
// (tmpfs) turns it off again, with one log line.
func (c *Cache) SetDirectIO(on bool) { c.direct.Store(on && oDirect != 0) }

// DirectIO reports whether block files bypass the page cache.
func (c *Cache) DirectIO() bool { return c.direct.Load() }

// directRefused turns direct I/O off after the file system refused it.
func (c *Cache) directRefused(err error) {
	if c.direct.Swap(false) {
		c.note("direct I/O refused, using the page cache", "err", err.Error())
	}
}

// aligned reports whether p starts on a directAlign boundary.
func aligned(p []byte) bool {
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))%directAlign == 0
}

// tails are aligned buffers for the last, partial page of a block and its
// trailer: a tail is under directAlign bytes, the trailer 16.
var tails = sync.Pool{New: func() any {
	b := make([]byte, 3*directAlign)
	off := 0
	if r := uintptr(unsafe.Pointer(&b[0])) % directAlign; r != 0 {
		off = int(directAlign - r)
	}
	return b[off : off+2*directAlign]
}}

// createTemp creates a new temp file in dir, open for writing with the
// extra open flags, making dir if it is missing.
func createTemp(dir string, flags int) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, tempPrefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|flags, 0o600)
		switch {
		case err == nil:
			return f, nil
		case errors.Is(err, fs.ErrExist) && try < 100:
		// First write for this file, or a scan (of this or another
		// process) removed the empty directory, possibly again right
		// after we made it.
		case errors.Is(err, fs.ErrNotExist) && try < 5:
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// writeDirect writes payload and its trailer to f, opened with O_DIRECT,
// which must be empty: the whole pages of payload straight from its
// memory, then the last partial page and the trailer from an aligned
// buffer, padded to a page and cut back to length.
func writeDirect(f *os.File, payload []byte) error {
	head := len(payload) &^ (directAlign - 1)
	if head > 0 {
		if _, err := f.Write(payload[:head]); err != nil {
			return err
		}
	}
	buf := tails.Get().([]byte)
	defer tails.Put(buf)
	n := copy(buf, payload[head:])
	n += copy(buf[n:], trailer(payload))
	padded := (n + directAlign - 1) &^ (directAlign - 1)
	clear(buf[n:padded])
	if _, err := f.Write(buf[:padded]); err != nil {
		return err
	}
	return f.Truncate(int64(len(payload) + trailerLen))
}

// readDirect reads into dst the payload of a block file opened with
// O_DIRECT and reports whether it is exactly len(dst) bytes that match
// their trailer. err is set when the read itself failed.
func readDirect(f *os.File, dst []byte) (ok bool, err error) {
	head := len(dst) &^ (directAlign - 1)
	if _, err := io.ReadFull(f, dst[:head]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil // shorter than asked
		}
		return false, err
	}
	buf := tails.Get().([]byte)
	defer tails.Put(buf)
	want := len(dst) - head + trailerLen
	n, err := io.ReadAtLeast(f, buf, want)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return false, nil
	case err != nil:
		return false, err
	case n != want:
		return false, nil // longer than asked: a block of another length
	}
	copy(dst[head:], buf[:len(dst)-head])
	return trailerMatches(buf[len(dst)-head:want], dst), nil
}

// readDirectFile opens path with O_DIRECT and reads it with readDirect.
func readDirectFile(path string, dst []byte) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oDirect, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return readDirect(f, dst)
}

// refusedDirect reports whether err is the file system refusing O_DIRECT
// (or its alignment) rather than a failure of the disk.
func refusedDirect(err error) bool { return errors.Is(err, syscall.EINVAL) }

// writeBlockFile atomically replaces path with payload and its trailer,
// through O_DIRECT when c uses it and payload is aligned.
//
// There is deliberately no fsync: a cache needs integrity, not durability.
// The trailer catches whatever a crash leaves torn, and a lost block is just
// fetched again.
func (c *Cache) writeBlockFile(path string, payload []byte) error {
	if !c.direct.Load() || !aligned(payload) {
		return writeFile(path, payload)
	}
	err := replaceFile(path, oDirect, func(f *os.File) error { return writeDirect(f, payload) })
	if refusedDirect(err) {
		c.directRefused(err)
		return writeFile(path, payload)
	}
	return err
}
