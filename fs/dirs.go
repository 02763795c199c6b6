package fs

import (
	"context"
	"errors"
	"path"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/appliveryfs/appliveryfs/api"
)

// Builds never change, so what the kernel learns about a build's
// directory and files may be kept for as long as it likes.
const immutableTTL = 24 * time.Hour

// listedDir is the root, an organization or an app: a directory whose
// entries come from an API listing that changes as builds are uploaded.
// The three differ only in what they list, so they share one type.
type listedDir struct {
	gofs.Inode
	fsys  *FS
	path  string
	mtime time.Time
	list  lister
	app   *entry // set for an app: its builds may be looked up by id before a listing shows them
}

var (
	_ gofs.NodeLookuper  = (*listedDir)(nil)
	_ gofs.NodeReaddirer = (*listedDir)(nil)
	_ gofs.NodeGetattrer = (*listedDir)(nil)
	_ gofs.NodeSetattrer = (*listedDir)(nil)
)

// Root returns the root node to mount.
func (f *FS) Root() gofs.InodeEmbedder {
	return &listedDir{fsys: f, mtime: f.started, list: f.listRoot}
}

func (d *listedDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := d.fsys
	// Before the listing: the mount's own status answers with the API down.
	if name == statusDirName && d.path == "" && f.cfg.Status != nil {
		out.Attr.Ino = f.ino(statusDirName)
		setDirAttr(&out.Attr)
		return d.NewInode(ctx, &statusDir{fsys: f}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: out.Attr.Ino}), 0
	}
	l, err := f.listing(ctx, d.path, d.list)
	if err != nil {
		f.logOnce("list:"+d.path+err.Error(), "list failed", "path", "/"+d.path, errAttrs(err))
		return nil, f.fail(ctx, err)
	}
	e, ok := l.byName[name]
	if !ok && d.app != nil && api.IsBuildID(name) {
		if e, err = d.lookupNewBuild(ctx, name); err != nil {
			return nil, f.fail(ctx, err)
		}
		ok = e != nil
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	child, ttl := d.child(e)
	return d.fsys.newChild(ctx, &d.Inode, d.path, e, child, ttl, out), 0
}

// child makes the node of one of the directory's entries, and says how
// long the kernel may keep what it learns of it.
func (d *listedDir) child(e *entry) (gofs.InodeEmbedder, time.Duration) {
	f, p := d.fsys, path.Join(d.path, e.name)
	switch e.kind {
	case kindOrg:
		return &listedDir{fsys: f, path: p, mtime: e.mtime,
			list: func(ctx context.Context) (*listing, error) { return f.listOrg(ctx, e.org) }}, f.cfg.DirTTL
	case kindApp:
		return &listedDir{fsys: f, path: p, mtime: e.mtime, app: e,
			list: func(ctx context.Context) (*listing, error) { return f.listApp(ctx, e.org, e.app) }}, f.cfg.DirTTL
	case kindBuild:
		// A build's files never change, but the build can be deleted: its
		// name is checked against the listing like any other.
		return &buildDir{fsys: f, path: p, buildRef: buildRef{e.org, e.app, e.build}, appPath: d.path, appList: d.list},
			f.cfg.DirTTL
	case kindNames:
		return &namesDir{fsys: f, path: p, mtime: e.mtime, key: e.names, appPath: d.path, appList: d.list}, f.cfg.DirTTL
	}
	return &linkNode{target: e.target}, f.cfg.DirTTL
}

// newChild fills out for entry e of the directory at dirPath and returns
// the inode of child, a new node for e or the live one of that number.
func (f *FS) newChild(ctx context.Context, parent *gofs.Inode, dirPath string, e *entry, child gofs.InodeEmbedder,
	ttl time.Duration, out *fuse.EntryOut) *gofs.Inode {
	a := &out.Attr
	a.Ino = f.ino(inoKey(path.Join(dirPath, e.name), e))
	a.Owner = fuse.Owner{Uid: f.cfg.UID, Gid: f.cfg.GID}
	setTime(a, e.mtime)
	if e.kind == kindLink {
		setLinkAttr(a, e.target)
		child.(*linkNode).attr = *a
	} else {
		setDirAttr(a)
	}
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
	return parent.NewInode(ctx, child, gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: a.Ino})
}

// lookupNewBuild finds a build uploaded since the app was listed, and
// keeps it beside the listing until the next refresh replaces both.
func (d *listedDir) lookupNewBuild(ctx context.Context, id string) (*entry, error) {
	f := d.fsys
	f.listMu.Lock()
	e := f.found[d.path][id]
	f.listMu.Unlock()
	if e != nil {
		return e, nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.IOTimeout)
	defer cancel()
	b, err := f.cfg.Client.Build(ctx, d.app.org.ID, d.app.app.ID, id)
	if errors.Is(err, api.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if b.Status != api.StatusProcessed || b.ID != id {
		return nil, nil
	}
	f.listMu.Lock()
	defer f.listMu.Unlock()
	if e = f.found[d.path][id]; e == nil {
		e = &entry{name: id, kind: kindBuild, org: d.app.org, app: d.app.app, build: b, mtime: b.CreatedAt}
		if f.found[d.path] == nil {
			f.found[d.path] = make(map[string]*entry)
		}
		f.found[d.path][id] = e
	}
	return e, nil
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

func (d *listedDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	f := d.fsys
	l, err := f.listing(ctx, d.path, d.list)
	if err != nil {
		f.logOnce("list:"+d.path+err.Error(), "list failed", "path", "/"+d.path, errAttrs(err))
		return nil, f.fail(ctx, err)
	}
	return f.dirStream(d.path, l), 0
}

// dirStream lists l's visible entries, in name order.
func (f *FS) dirStream(dirPath string, l *listing) gofs.DirStream {
	out := make([]fuse.DirEntry, 0, len(l.visible))
	for _, e := range l.visible {
		mode := uint32(syscall.S_IFDIR)
		if e.kind == kindLink {
			mode = syscall.S_IFLNK
		}
		out = append(out, fuse.DirEntry{Name: e.name, Mode: mode, Ino: f.ino(inoKey(path.Join(dirPath, e.name), e))})
	}
	return gofs.NewListDirStream(out)
}

func (d *listedDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return d.fsys.dirAttr(d.mtime, out)
}

func (d *listedDir) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// dirAttr fills the attributes of a directory that changes with listings.
func (f *FS) dirAttr(mtime time.Time, out *fuse.AttrOut) syscall.Errno {
	setDirAttr(&out.Attr)
	out.Owner = fuse.Owner{Uid: f.cfg.UID, Gid: f.cfg.GID}
	setTime(&out.Attr, mtime)
	out.SetTimeout(f.cfg.DirTTL)
	return 0
}

// namesDir is versions/, tags/ or tags/<tag>/ of an app: symlinks that
// name builds by version and tag, and directories of them. Version names
// and tags can be edited on Applivery, so these follow the app's listing,
// from which they are made.
type namesDir struct {
	gofs.Inode
	fsys    *FS
	path    string
	mtime   time.Time
	key     string // in the app listing's names
	appPath string
	appList lister
}

var (
	_ gofs.NodeLookuper  = (*namesDir)(nil)
	_ gofs.NodeReaddirer = (*namesDir)(nil)
	_ gofs.NodeGetattrer = (*namesDir)(nil)
	_ gofs.NodeSetattrer = (*namesDir)(nil)
)

// names returns the directory's current listing; an empty one when the
// app no longer has it (a tag removed from every build).
func (d *namesDir) names(ctx context.Context) (*listing, error) {
	l, err := d.fsys.listing(ctx, d.appPath, d.appList)
	if err != nil {
		d.fsys.logOnce("list:"+d.path+err.Error(), "list failed", "path", "/"+d.appPath, errAttrs(err))
		return nil, err
	}
	if n := l.names[d.key]; n != nil {
		return n, nil
	}
	return newListing(nil), nil
}

func (d *namesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, err := d.names(ctx)
	if err != nil {
		return nil, d.fsys.fail(ctx, err)
	}
	e, ok := l.byName[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	var child gofs.InodeEmbedder = &linkNode{target: e.target}
	if e.kind == kindNames {
		child = &namesDir{fsys: d.fsys, path: path.Join(d.path, e.name), mtime: e.mtime, key: e.names,
			appPath: d.appPath, appList: d.appList}
	}
	return d.fsys.newChild(ctx, &d.Inode, d.path, e, child, d.fsys.cfg.DirTTL, out), 0
}

func (d *namesDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, err := d.names(ctx)
	if err != nil {
		return nil, d.fsys.fail(ctx, err)
	}
	return d.fsys.dirStream(d.path, l), 0
}

func (d *namesDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return d.fsys.dirAttr(d.mtime, out)
}

func (d *namesDir) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func setDirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
}

func setLinkAttr(a *fuse.Attr, target string) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Size = uint64(len(target))
	a.Nlink = 1
}

func setTime(a *fuse.Attr, t time.Time) {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	a.SetTimes(&t, &t, &t)
}

// fixedAttr answers Getattr and Setattr for a node whose attributes never
// change: a symlink, info.json.
type fixedAttr struct {
	attr fuse.Attr
}

func (f *fixedAttr) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = f.attr
	out.SetTimeout(immutableTTL)
	return 0
}

func (f *fixedAttr) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// linkNode is a relative symlink: latest, an id alias, or a bare type name.
// Its target never changes: a new target is a new inode (see inoKey).
type linkNode struct {
	gofs.Inode
	fixedAttr
	target string
}

var (
	_ gofs.NodeReadlinker = (*linkNode)(nil)
	_ gofs.NodeGetattrer  = (*linkNode)(nil)
	_ gofs.NodeSetattrer  = (*linkNode)(nil)
)

func (l *linkNode) Readlink(context.Context) ([]byte, syscall.Errno) { return []byte(l.target), 0 }
