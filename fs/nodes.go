package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
)

// Builds never change, so what the kernel learns about a build's
// directory and files may be kept for as long as it likes.
const immutableTTL = 24 * time.Hour

// blksize makes cp and friends read in large chunks.
const blksize = 1 << 20

// staleRetry is how long a listing whose refresh failed is served before
// the API is asked again.
const staleRetry = 10 * time.Second

type dirLevel int

const (
	levelRoot dirLevel = iota
	levelOrg
	levelApp
	levelBuild
)

// dirNode is the root, an organization, an app or a build.
type dirNode struct {
	gofs.Inode
	fsys  *FS
	level dirLevel
	path  string
	e     *entry // what this directory is; nil for the root
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
)

// Root returns the root node to mount.
func (f *FS) Root() gofs.InodeEmbedder {
	return &dirNode{fsys: f, level: levelRoot}
}

// listing returns the directory's entries, from cache while fresh. A
// refresh is shared by concurrent callers and survives one of them being
// interrupted.
func (d *dirNode) listing(ctx context.Context) (*listing, error) {
	f := d.fsys
	f.listMu.Lock()
	l := f.listings[d.path]
	f.listMu.Unlock()
	if l != nil && (d.level == levelBuild || time.Since(l.at) < f.cfg.DirTTL) {
		return l, nil
	}
	ch := f.group.DoChan("dir:"+d.path, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.IOTimeout)
		defer cancel()
		var ents []*entry
		var err error
		switch d.level {
		case levelRoot:
			ents, err = f.listRoot(ctx)
		case levelOrg:
			ents, err = f.listOrg(ctx, d.e.org)
		case levelApp:
			ents, err = f.listApp(ctx, d.e.org, d.e.app)
		case levelBuild:
			ents, err = f.listBuild(d.e.org, d.e.app, d.e.build)
		}
		if err != nil {
			return nil, err
		}
		nl := newListing(ents)
		f.listMu.Lock()
		f.listings[d.path] = nl
		f.listMu.Unlock()
		return nl, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			if l != nil {
				// A stale listing beats an error: the API may be briefly
				// down. Trust it a while longer, so that every lookup does
				// not wait for another failing refresh.
				f.logOnce("list:"+d.path+r.Err.Error(), "appliveryfs: refresh /%s: %v (serving the previous listing)", d.path, r.Err)
				f.listMu.Lock()
				if f.listings[d.path] == l {
					retry := *l
					retry.at = time.Now().Add(-f.cfg.DirTTL).Add(min(f.cfg.DirTTL, staleRetry))
					f.listings[d.path] = &retry
				}
				f.listMu.Unlock()
				return l, nil
			}
			return nil, r.Err
		}
		return r.Val.(*listing), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, err := d.listing(ctx)
	if err != nil {
		d.fsys.logOnce("lookup:"+d.path+err.Error(), "appliveryfs: list /%s: %v", d.path, err)
		return nil, errno(ctx, err)
	}
	e, ok := l.byName[name]
	if !ok && d.level == levelApp && buildIDPattern.MatchString(name) {
		d.fsys.listMu.Lock()
		e, ok = d.fsys.found[path.Join(d.path, name)]
		d.fsys.listMu.Unlock()
	}
	if !ok && d.level == levelApp && buildIDPattern.MatchString(name) {
		e, err = d.lookupNewBuild(ctx, name)
		if err != nil {
			return nil, errno(ctx, err)
		}
		ok = e != nil
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	child, errNo := d.child(ctx, e, &out.Attr)
	if errNo != 0 {
		return nil, errNo
	}
	ttl := d.fsys.cfg.DirTTL
	if d.level == levelBuild || (d.level == levelApp && e.kind == kindDir) {
		ttl = immutableTTL
	}
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
	return d.NewInode(ctx, child, gofs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT, Ino: out.Attr.Ino}), 0
}

// lookupNewBuild finds a build uploaded since the app was listed.
func (d *dirNode) lookupNewBuild(ctx context.Context, id string) (*entry, error) {
	ctx, cancel := context.WithTimeout(ctx, d.fsys.cfg.IOTimeout)
	defer cancel()
	b, err := d.fsys.cfg.Client.Build(ctx, d.e.org.ID, d.e.app.ID, id)
	if api.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if b.Status != api.StatusProcessed || b.ID != id {
		return nil, nil
	}
	// Remember it until a refresh lists it: listings are read without a
	// lock, so it is kept beside them rather than added to one.
	key := path.Join(d.path, id)
	d.fsys.listMu.Lock()
	defer d.fsys.listMu.Unlock()
	e, ok := d.fsys.found[key]
	if !ok {
		e = &entry{name: id, kind: kindDir, org: d.e.org, app: d.e.app, build: b, mtime: b.CreatedAt}
		d.fsys.found[key] = e
	}
	return e, nil
}

// child makes the node for an entry and fills its attributes.
func (d *dirNode) child(ctx context.Context, e *entry, a *fuse.Attr) (gofs.InodeEmbedder, syscall.Errno) {
	f := d.fsys
	p := path.Join(d.path, e.name)
	a.Ino = f.ino(inoKey(p, e))
	a.Owner = fuse.Owner{Uid: f.cfg.UID, Gid: f.cfg.GID}
	setTime(a, e.mtime)
	switch e.kind {
	case kindDir:
		a.Mode = syscall.S_IFDIR | 0o555
		a.Nlink = 2
		return &dirNode{fsys: f, level: d.level + 1, path: p, e: e}, 0
	case kindLink:
		a.Mode = syscall.S_IFLNK | 0o777
		a.Size = uint64(len(e.target))
		a.Nlink = 1
		return &linkNode{target: e.target, attr: *a}, 0
	case kindInfo:
		a.Mode = syscall.S_IFREG | 0o444
		setSize(a, int64(len(e.info)))
		return &infoNode{data: e.info, attr: *a}, 0
	}
	size, err := f.fileSize(ctx, e)
	if err != nil {
		f.logOnce("size:"+p+err.Error(), "appliveryfs: size of /%s: %v", p, err)
		return nil, errno(ctx, err)
	}
	a.Mode = syscall.S_IFREG | 0o444
	setSize(a, size)
	return &fileNode{fsys: f, path: p, e: e, attr: *a}, 0
}

// inoKey names the object behind a path for inode numbering. A symlink
// that changes target (latest) must get a new inode: go-fuse hands back the
// live node of a known inode number, which would keep the old target.
func inoKey(p string, e *entry) string {
	if e.kind == kindLink {
		return p + "\x00" + e.target
	}
	return p
}

func setTime(a *fuse.Attr, t time.Time) {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	a.SetTimes(&t, &t, &t)
}

func setSize(a *fuse.Attr, size int64) {
	a.Size = uint64(size)
	a.Blocks = uint64((size + 511) / 512)
	a.Blksize = blksize
	a.Nlink = 1
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, err := d.listing(ctx)
	if err != nil {
		d.fsys.logOnce("readdir:"+d.path+err.Error(), "appliveryfs: list /%s: %v", d.path, err)
		return nil, errno(ctx, err)
	}
	out := make([]fuse.DirEntry, 0, len(l.visible))
	for _, e := range l.visible {
		mode := uint32(syscall.S_IFREG)
		switch e.kind {
		case kindDir:
			mode = syscall.S_IFDIR
		case kindLink:
			mode = syscall.S_IFLNK
		}
		out = append(out, fuse.DirEntry{Name: e.name, Mode: mode, Ino: d.fsys.ino(inoKey(path.Join(d.path, e.name), e))})
	}
	return gofs.NewListDirStream(out), 0
}

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f := d.fsys
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	out.Owner = fuse.Owner{Uid: f.cfg.UID, Gid: f.cfg.GID}
	t := f.started
	if d.e != nil {
		t = d.e.mtime
	}
	setTime(&out.Attr, t)
	if d.level == levelBuild {
		out.SetTimeout(immutableTTL)
	} else {
		out.SetTimeout(f.cfg.DirTTL)
	}
	return 0
}

func (d *dirNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// linkNode is a relative symlink: latest, an id alias, or a bare type name.
type linkNode struct {
	gofs.Inode
	target string
	attr   fuse.Attr
}

var _ gofs.NodeReadlinker = (*linkNode)(nil)

func (l *linkNode) Readlink(context.Context) ([]byte, syscall.Errno) { return []byte(l.target), 0 }

func (l *linkNode) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = l.attr
	out.SetTimeout(immutableTTL)
	return 0
}

// infoNode is a build's info.json, generated from the API's metadata.
type infoNode struct {
	gofs.Inode
	data []byte
	attr fuse.Attr
}

var (
	_ gofs.NodeOpener = (*infoNode)(nil)
	_ gofs.NodeReader = (*infoNode)(nil)
)

func (n *infoNode) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = n.attr
	out.SetTimeout(immutableTTL)
	return 0
}

func (n *infoNode) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *infoNode) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(n.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(n.data[off:min(int64(len(n.data)), off+int64(len(dest)))]), 0
}

func (n *infoNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// fileNode is a build file served from storage through the cache.
type fileNode struct {
	gofs.Inode
	fsys *FS
	path string
	e    *entry
	attr fuse.Attr
}

var (
	_ gofs.NodeOpener    = (*fileNode)(nil)
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeSetattrer = (*fileNode)(nil)
)

func (n *fileNode) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = n.attr
	out.SetTimeout(immutableTTL)
	return 0
}

func (n *fileNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open spends nothing: the token is minted by the first read that misses
// every cache, so re-reading a cached build costs no token at all.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	f := n.fsys
	key := fileKey(n.e.build, n.e.art.Type)
	cf := f.remote(n.e).cached(f.cfg.Cache, key, int64(n.attr.Size), n.e.art.Checksum)
	// Pages stay cached across opens: the bytes of a build never change.
	// Not while the file awaits (or failed) its checksum verdict, though:
	// a copy served from pages alone would never reach the check.
	fopen := uint32(fuse.FOPEN_KEEP_CACHE)
	if f.cfg.DropPageCache || cf.Unsettled() {
		fopen = 0
	}
	return &fileHandle{node: n, r: cf.NewReader()}, fopen, 0
}

type fileHandle struct {
	node *fileNode
	r    *cache.Reader
}

var (
	_ gofs.FileReader   = (*fileHandle)(nil)
	_ gofs.FileFlusher  = (*fileHandle)(nil)
	_ gofs.FileReleaser = (*fileHandle)(nil)
)

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.node.fsys
	rctx, cancel := context.WithTimeout(ctx, f.cfg.IOTimeout)
	defer cancel()
	n, err := h.r.ReadAt(rctx, dest, off)
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
		f.logOnce(fmt.Sprintf("read:%s:%d", h.node.path, e), "appliveryfs: read /%s at %d: %v", h.node.path, off, err)
		return nil, e
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Flush comes with every close(2), while the kernel's readahead READs may
// still be in flight; Release only after they end. A process gone (Ctrl-C
// on cp) should not keep storage busy that long, so prefetch stops here.
// Another descriptor of the same open file may read on: prefetch resumes.
func (h *fileHandle) Flush(context.Context) syscall.Errno {
	h.r.Pause()
	return 0
}

func (h *fileHandle) Release(context.Context) syscall.Errno {
	h.r.Close()
	return 0
}

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
