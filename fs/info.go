package fs

import (
	"context"
	"encoding/json"
	"fmt"
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

// infoNode is a build's info.json, generated from the API's metadata.
type infoNode struct {
	gofs.Inode
	fixedAttr
	data []byte
}

var (
	_ gofs.NodeGetattrer = (*infoNode)(nil)
	_ gofs.NodeSetattrer = (*infoNode)(nil)
	_ gofs.NodeOpener    = (*infoNode)(nil)
	_ gofs.NodeReader    = (*infoNode)(nil)
)

func (n *infoNode) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if writeFlags(flags) {
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
