package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// statusDirName is the root's directory for the mount's own files. It is
// not listed, so that rsync and find of the mount do not meet it, and the
// root's listing keeps the name from any organization (see nameAll).
const statusDirName = ".appliveryfs"

// statusDir is MOUNT/.appliveryfs.
type statusDir struct {
	gofs.Inode
	fsys *FS
}

var (
	_ gofs.NodeLookuper  = (*statusDir)(nil)
	_ gofs.NodeReaddirer = (*statusDir)(nil)
	_ gofs.NodeGetattrer = (*statusDir)(nil)
)

func (d *statusDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name != "status" {
		return nil, syscall.ENOENT
	}
	n := &statusNode{fsys: d.fsys, ino: d.fsys.ino(statusDirName + "/status"), mtime: d.fsys.started}
	var a fuse.AttrOut
	n.Getattr(ctx, nil, &a)
	out.Attr = a.Attr
	return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: a.Ino}), 0
}

func (d *statusDir) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream([]fuse.DirEntry{{Name: "status", Mode: syscall.S_IFREG,
		Ino: d.fsys.ino(statusDirName + "/status")}}), 0
}

func (d *statusDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return d.fsys.dirAttr(d.fsys.started, out)
}

// statusNode is MOUNT/.appliveryfs/status: the mount's figures as text,
// made afresh at each open and read directly, never from kept pages.
type statusNode struct {
	gofs.Inode
	fsys  *FS
	ino   uint64
	mtime time.Time
}

var (
	_ gofs.NodeGetattrer = (*statusNode)(nil)
	_ gofs.NodeOpener    = (*statusNode)(nil)
	_ gofs.NodeReader    = (*statusNode)(nil)
)

func (n *statusNode) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Ino = n.ino
	out.Owner = fuse.Owner{Uid: n.fsys.cfg.UID, Gid: n.fsys.cfg.GID}
	setFileAttr(&out.Attr, int64(len(n.fsys.cfg.Status())))
	setTime(&out.Attr, n.mtime)
	out.SetTimeout(0)
	return 0
}

func (n *statusNode) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if writeFlags(flags) {
		return nil, 0, syscall.EROFS
	}
	// Direct I/O: the text's length changes between opens, and the
	// kernel must not cut a read at the size it saw last.
	return &infoHandle{data: n.fsys.cfg.Status()}, fuse.FOPEN_DIRECT_IO, 0
}

func (n *statusNode) Read(_ context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fh.(*infoHandle).read(dest, off), 0
}
