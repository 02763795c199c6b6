package fs

import (
	"context"
	"path"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/appliveryfs/appliveryfs/api"
)

// buildDir is one processed build. Its files never change, so, as in
// go-fuse's zipfs, its children are made once, when the kernel first
// learns of the directory, and are never looked up again.
type buildDir struct {
	gofs.Inode
	fsys *FS
	path string
	buildRef
	appPath string // where info.json looks for the build's editable facts
	appList lister
}

// buildRef is what a build's directory and files need to reach it.
type buildRef struct {
	org   *api.Organization
	app   *api.App
	build *api.Build
}

var (
	_ gofs.NodeOnAdder   = (*buildDir)(nil)
	_ gofs.NodeLookuper  = (*buildDir)(nil)
	_ gofs.NodeGetattrer = (*buildDir)(nil)
	_ gofs.NodeSetattrer = (*buildDir)(nil)
)

// OnAdd makes info.json, a file per download type and, for each, a
// symlink from the bare type name.
func (d *buildDir) OnAdd(ctx context.Context) {
	f, b := d.fsys, d.build
	ia := d.attr("info.json")
	ia.Mode = syscall.S_IFREG | 0o444
	d.add("info.json", &infoNode{fsys: f, path: path.Join(d.path, "info.json"), buildRef: d.buildRef,
		appPath: d.appPath, appList: d.appList, attr: ia}, ia)
	for _, art := range b.Artifacts() {
		name := string(art.Type) + "." + art.Ext
		fa := d.attr(name)
		fa.Mode = syscall.S_IFREG | 0o444
		fn := &fileNode{fsys: f, path: path.Join(d.path, name), buildRef: d.buildRef, art: art,
			attr: fa, size: art.Size}
		if fn.size < 0 && f.cfg.Sizes != nil {
			if s, ok := f.cfg.Sizes.Size(fn.key()); ok {
				fn.size = s // learnt by an earlier mount
			}
		}
		d.add(name, fn, fa)
		la := d.attr(string(art.Type))
		setLinkAttr(&la, name)
		d.add(string(art.Type), &linkNode{target: name, fixedAttr: fixedAttr{la}}, la)
	}
}

// attr is what every child shares: inode number, owner, times.
func (d *buildDir) attr(name string) fuse.Attr {
	var a fuse.Attr
	a.Ino = d.fsys.ino(path.Join(d.path, name))
	a.Owner = fuse.Owner{Uid: d.fsys.cfg.UID, Gid: d.fsys.cfg.GID}
	setTime(&a, d.build.CreatedAt)
	return a
}

// add makes a child that lives as long as the directory.
func (d *buildDir) add(name string, n gofs.InodeEmbedder, a fuse.Attr) {
	ch := d.NewPersistentInode(context.Background(), n, gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: a.Ino})
	d.AddChild(name, ch, false)
}

// Lookup serves the children made in OnAdd, with the long timeouts of
// what never changes; info.json's attributes follow the listings.
func (d *buildDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	var a fuse.AttrOut
	if e := ch.Operations().(gofs.NodeGetattrer).Getattr(ctx, nil, &a); e != 0 {
		return nil, e
	}
	out.Attr = a.Attr
	out.SetEntryTimeout(immutableTTL)
	out.SetAttrTimeout(a.Timeout())
	return ch, 0
}

func (d *buildDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setDirAttr(&out.Attr)
	out.Owner = fuse.Owner{Uid: d.fsys.cfg.UID, Gid: d.fsys.cfg.GID}
	setTime(&out.Attr, d.build.CreatedAt)
	out.SetTimeout(immutableTTL)
	return 0
}

func (d *buildDir) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
