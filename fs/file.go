package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/singleflight"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
)

// blksize makes cp and friends read in large chunks.
const blksize = 1 << 20

// fileNode is a build file served from storage through the cache.
type fileNode struct {
	gofs.Inode
	fsys *FS
	path string
	buildRef
	art  api.Artifact
	attr fuse.Attr // all but the size

	sizeMu sync.Mutex
	size   int64 // -1 until known
}

var (
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeSetattrer = (*fileNode)(nil)
	_ gofs.NodeOpener    = (*fileNode)(nil)
)

func (n *fileNode) key() cache.FileKey {
	return cache.FileKey{Build: n.build.ID, Type: string(n.art.Type)}
}

func (n *fileNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	size, err := n.exactSize(ctx)
	if err != nil {
		n.fsys.logOnce("size:"+n.path+err.Error(), "size failed", "path", "/"+n.path, "build", n.build.ID, "type", n.art.Type, errAttrs(err))
		return n.fsys.fail(ctx, err)
	}
	out.Attr = n.attr
	setFileAttr(&out.Attr, size)
	out.SetTimeout(immutableTTL)
	return 0
}

func setFileAttr(a *fuse.Attr, size int64) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Size = uint64(size)
	a.Blocks = uint64((size + 511) / 512)
	a.Blksize = blksize
	a.Nlink = 1
}

func (n *fileNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// exactSize returns the file's exact size. Only a file the API gives no
// size for (an OTA manifest) costs a token, once: the size is kept on disk
// across mounts, since builds never change.
func (n *fileNode) exactSize(ctx context.Context) (int64, error) {
	n.sizeMu.Lock()
	size := n.size
	n.sizeMu.Unlock()
	if size >= 0 {
		return size, nil
	}
	f, key := n.fsys, n.key()
	ch := f.group.DoChan("size:"+key.String(), func() (any, error) {
		// Detached: one interrupted caller must not fail the others.
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.IOTimeout)
		defer cancel()
		return n.remote().obj.Stat(ctx)
	})
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	if r.Err != nil {
		return -1, r.Err
	}
	size = r.Val.(int64)
	n.sizeMu.Lock()
	n.size = size
	n.sizeMu.Unlock()
	if f.cfg.Sizes != nil {
		if err := f.cfg.Sizes.SetSize(key, size); err != nil {
			f.logOnce("setsize:"+key.String(), "keeping the size failed", "build", key.Build, "type", key.Type, "err", err.Error())
		}
	}
	return size, nil
}

// remoteFile ties a build file's storage object to its cached view. It
// lives as long as the mount, so the storage URL outlives kernel FORGETs.
type remoteFile struct {
	obj  *api.Object
	once sync.Once
	file *cache.File
}

func (n *fileNode) remote() *remoteFile {
	f, key := n.fsys, n.key()
	f.objMu.Lock()
	defer f.objMu.Unlock()
	r, ok := f.objects[key]
	if !ok {
		n.sizeMu.Lock()
		size := n.size
		n.sizeMu.Unlock()
		r = &remoteFile{obj: f.cfg.Client.Object(n.org.ID, n.app.ID, n.build.ID, n.art.Type, size)}
		f.objects[key] = r
	}
	return r
}

// Open spends nothing: the token is minted by the first read that misses
// every cache, so re-reading a cached build costs no token at all.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if writeFlags(flags) {
		return nil, 0, syscall.EROFS
	}
	size, err := n.exactSize(ctx)
	if err != nil {
		return nil, 0, n.fsys.fail(ctx, err)
	}
	f := n.fsys
	r := n.remote()
	r.once.Do(func() { r.file = f.cfg.Cache.File(n.key(), size, n.art.Checksum, r.obj) })
	// Pages stay cached across opens: the bytes of a build never change.
	// Not while the file awaits (or failed) its checksum verdict, though:
	// a copy served from pages alone would never reach the check.
	fopen := uint32(fuse.FOPEN_KEEP_CACHE)
	if f.cfg.DropPageCache || r.file.Unsettled() {
		fopen = 0
	}
	h := &fileHandle{node: n, r: r.file.NewReader(), file: r.file, size: size, fetchedAtOpen: r.file.Fetched()}
	f.stats.opened(h)
	return h, fopen, 0
}

func writeFlags(flags uint32) bool {
	return flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0
}

// fileHandle is one open of a build file.
type fileHandle struct {
	node          *fileNode
	r             *cache.Reader
	file          *cache.File
	size          int64
	fetchedAtOpen int64 // the file's fetched bytes when this open began
}

var (
	_ gofs.FileReader   = (*fileHandle)(nil)
	_ gofs.FileFlusher  = (*fileHandle)(nil)
	_ gofs.FileReleaser = (*fileHandle)(nil)
)

// Read is where a READ enters the cache: cache/read.go goes on from
// Reader.ReadAt, and api/object.go makes the HTTP request.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.node.fsys
	start := time.Now()
	defer func() { f.stats.observeRead(time.Since(start)) }()
	res, err := h.read(ctx, dest, off) // bounded by --io-timeout inside
	if err != nil && err != io.EOF {
		e := errno(ctx, err)
		switch {
		case e == syscall.EINTR:
			return nil, e // the reader was interrupted (Ctrl-C); nothing failed
		case e == syscall.ENOENT:
			e = syscall.EIO // a file that vanished mid-read is an I/O error, not a missing name
		case errors.Is(err, cache.ErrChecksum):
			// Pages already served are as bad as the rest: make the kernel
			// forget them. From a goroutine: notifying from within a READ
			// of the same inode deadlocks the kernel.
			go h.node.NotifyContent(0, 0)
		}
		f.logOnce(fmt.Sprintf("read:%s:%d", h.node.path, e), "read failed", "path", "/"+h.node.path,
			"build", h.node.build.ID, "type", h.node.art.Type, "offset", off, "errno", errnoName(e), errAttrs(err))
		f.stats.countErrno(e)
		return nil, e
	}
	return res, 0
}

// read answers a READ from the cached block the bytes lie in, without
// copying them, or else (they span two blocks; --zero-copy=false) copied
// into dest.
func (h *fileHandle) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, error) {
	if !h.node.fsys.cfg.CopyReads {
		l, ok, err := h.r.Lend(ctx, off, len(dest))
		if ok {
			if err != nil {
				return nil, err
			}
			return &lentResult{l}, nil
		}
	}
	n, err := h.r.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return fuse.ReadResultData(dest[:n]), nil
}

// lentResult is a READ reply pointing into a cached block, which it holds
// until go-fuse has written it to the kernel. It has Slices, so that
// go-fuse writes it with writev before calling Done; with only Bytes,
// go-fuse may call Done before the write (with splice disabled).
type lentResult struct{ l cache.Lent }

func (r *lentResult) Size() int                          { return len(r.l.Data) }
func (r *lentResult) Bytes([]byte) ([]byte, fuse.Status) { return r.l.Data, fuse.OK }
func (r *lentResult) Slices() ([][]byte, fuse.Status)    { return [][]byte{r.l.Data}, fuse.OK }
func (r *lentResult) Done()                              { r.l.Release() }

var _ fuse.ReadResult = (*lentResult)(nil)

// Flush comes with every close(2), while the kernel's readahead READs may
// still be in flight; Release only after they end. A process gone (Ctrl-C
// on cp) should not keep storage busy that long, so prefetch stops here.
// Another descriptor of the same open file may read on: prefetch resumes.
func (h *fileHandle) Flush(context.Context) syscall.Errno {
	h.r.Pause()
	return 0
}

func (h *fileHandle) Release(context.Context) syscall.Errno {
	h.node.fsys.stats.closed(h)
	h.r.Close()
	return 0
}
