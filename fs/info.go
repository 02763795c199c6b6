package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/appliveryfs/appliveryfs/api"
)

// buildInfo is what info.json shows: the facts a script wants, without the
// API's storage internals (bucket keys, locations).
type buildInfo struct {
	ID           string            `json:"id"`
	Organization string            `json:"organization"`
	App          string            `json:"app"`
	AppName      string            `json:"appName"`
	Status       string            `json:"status"`
	CreatedAt    time.Time         `json:"createdAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	OS           string            `json:"os"`
	Platform     string            `json:"buildPlatform"`
	VersionName  string            `json:"versionName"`
	VersionCode  string            `json:"versionCode,omitempty"`
	PackageName  string            `json:"packageName,omitempty"`
	MinOS        string            `json:"minOSVersion,omitempty"`
	OriginalExt  string            `json:"originalExtension,omitempty"`
	Tags         []string          `json:"tags"`
	Changelog    string            `json:"changelog,omitempty"`
	UploadedBy   string            `json:"uploadedBy,omitempty"`
	Files        map[string]fileJS `json:"files"`
}

type fileJS struct {
	Type     string `json:"type"`
	Size     *int64 `json:"size"` // null when the API does not say (an OTA manifest)
	Checksum string `json:"checksum,omitempty"`
}

func infoJSON(org *api.Organization, app *api.App, b *api.Build) ([]byte, error) {
	bi := buildInfo{
		ID: b.ID, Organization: org.Slug, App: app.Slug, AppName: app.Name, Status: b.Status,
		OS: b.OS, Platform: b.BuildPlatform, VersionName: b.VersionName, VersionCode: string(b.VersionCode),
		PackageName: b.Info.PackageName(), MinOS: b.Info.MinOS(), OriginalExt: b.OriginalExtension,
		Tags: b.Tags, Changelog: b.Changelog, UploadedBy: b.UploadedBy.String(),
		CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt, Files: map[string]fileJS{},
	}
	if bi.Tags == nil {
		bi.Tags = []string{}
	}
	for _, a := range b.Artifacts() {
		fj := fileJS{Type: string(a.Type), Checksum: a.Checksum}
		if a.Size >= 0 {
			s := a.Size
			fj.Size = &s
		}
		bi.Files[string(a.Type)+"."+a.Ext] = fj
	}
	out, err := json.MarshalIndent(bi, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("info.json of build %s: %w", b.ID, err)
	}
	return append(out, '\n'), nil
}

// infoNode is a build's info.json, generated from the API's metadata. A
// build's version name, tags and changelog can be edited after upload, so
// it is made afresh from the app's listing, which is refreshed after
// --dir-ttl, and its pages are not kept across opens.
type infoNode struct {
	gofs.Inode
	fsys *FS
	path string
	buildRef
	appPath string
	appList lister
	attr    fuse.Attr // all but the size

	mu    sync.Mutex
	from  *api.Build // what data was made from
	data  []byte
	mtime time.Time
}

var (
	_ gofs.NodeGetattrer = (*infoNode)(nil)
	_ gofs.NodeSetattrer = (*infoNode)(nil)
	_ gofs.NodeOpener    = (*infoNode)(nil)
	_ gofs.NodeReader    = (*infoNode)(nil)
)

// current returns info.json as the app's listing has the build now; the
// build as first seen when the listing cannot be had or no longer shows
// it (a build found by id, not listed yet).
func (n *infoNode) current(ctx context.Context) ([]byte, time.Time, error) {
	b := n.build
	if l, err := n.fsys.listing(ctx, n.appPath, n.appList); err == nil {
		if e := l.byName[n.build.ID]; e != nil && e.build != nil {
			b = e.build
		}
	} else if ctx.Err() != nil {
		return nil, time.Time{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.from != b {
		data, err := infoJSON(n.org, n.app, b)
		if err != nil {
			return nil, time.Time{}, err
		}
		n.from, n.data, n.mtime = b, data, b.CreatedAt
		if b.UpdatedAt.After(b.CreatedAt) {
			n.mtime = b.UpdatedAt // edited: tools that compare mtimes see it
		}
	}
	return n.data, n.mtime, nil
}

func (n *infoNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	data, mtime, err := n.current(ctx)
	if err != nil {
		n.fsys.logOnce("info:"+n.path+err.Error(), "info.json failed", "path", "/"+n.path, errAttrs(err))
		return n.fsys.fail(ctx, err)
	}
	out.Attr = n.attr
	setFileAttr(&out.Attr, int64(len(data)))
	setTime(&out.Attr, mtime)
	out.SetTimeout(n.fsys.cfg.DirTTL)
	return 0
}

func (n *infoNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open takes the content of the moment, so that one reader sees one
// version of it from start to end.
func (n *infoNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if writeFlags(flags) {
		return nil, 0, syscall.EROFS
	}
	data, _, err := n.current(ctx)
	if err != nil {
		return nil, 0, n.fsys.fail(ctx, err)
	}
	// Direct I/O: the kernel may still hold the size of an earlier
	// version for --dir-ttl, and must not cut this one's reads at it.
	return &infoHandle{data: data}, fuse.FOPEN_DIRECT_IO, 0
}

func (n *infoNode) Read(_ context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fh.(*infoHandle).read(dest, off), 0
}

// infoHandle is one open of a generated file: the bytes it was opened with.
type infoHandle struct{ data []byte }

func (h *infoHandle) read(dest []byte, off int64) fuse.ReadResult {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil)
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))])
}
