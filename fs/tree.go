// Package fs presents Applivery builds as a read-only FUSE filesystem:
//
//	MOUNT/<org-slug>/<app-slug>/latest -> <build-id>
//	MOUNT/<org-slug>/<app-slug>/<build-id>/{info.json, file.<ext>, auto.<ext>, aab.aab}
//	MOUNT/<org-slug>/<app-slug>/<build-id>/{file,auto,aab} -> the files above
//
// It speaks FUSE only: Applivery is reached through package api and bytes
// are kept by package cache.
package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
)

// Config is what a mount needs.
type Config struct {
	Client    *api.Client
	Cache     *cache.Cache
	Disk      *cache.Disk // keeps sizes learnt from storage; may be nil
	Orgs      []string    // only these organizations (id or slug); empty for all
	UID, GID  uint32
	DirTTL    time.Duration // how long org and app listings are trusted
	IOTimeout time.Duration // bound on one read, retries included
	// DropPageCache lets the kernel drop a file's cached pages at every
	// open, as for files that may change. Builds never do; this exists to
	// measure what keeping them is worth.
	DropPageCache bool
	Log           *log.Logger
}

// FS holds the state shared by every node of one mount.
type FS struct {
	cfg     Config
	started time.Time

	inoMu   sync.Mutex
	inos    map[string]uint64 // path -> inode number, stable for the mount's life
	nextIno uint64

	listMu   sync.Mutex
	listings map[string]*listing // dir path -> last listing
	found    map[string]*entry   // build path -> a build looked up by id before a listing showed it
	group    singleflight.Group

	objMu   sync.Mutex
	objects map[cache.FileKey]*remoteFile

	logMu  sync.Mutex
	logged map[string]bool
}

// New returns the filesystem's shared state; Root gives its root node.
func New(cfg Config) *FS {
	if cfg.DirTTL <= 0 {
		cfg.DirTTL = time.Minute
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = log.Default()
	}
	return &FS{
		cfg:      cfg,
		started:  time.Now(),
		inos:     map[string]uint64{"": 1},
		nextIno:  2,
		listings: make(map[string]*listing),
		found:    make(map[string]*entry),
		objects:  make(map[cache.FileKey]*remoteFile),
		logged:   make(map[string]bool),
	}
}

// ino returns the inode number of a path. Numbers come from a counter, not
// a hash: a collision would make go-fuse alias two files.
func (f *FS) ino(p string) uint64 {
	f.inoMu.Lock()
	defer f.inoMu.Unlock()
	if n, ok := f.inos[p]; ok {
		return n
	}
	n := f.nextIno
	f.nextIno++
	f.inos[p] = n
	return n
}

// logOnce logs a failure the first time it is seen, so a failing file
// read a thousand times does not flood the log.
func (f *FS) logOnce(key, format string, args ...any) {
	f.logMu.Lock()
	seen := f.logged[key]
	if !seen {
		if len(f.logged) > 10000 {
			clear(f.logged)
		}
		f.logged[key] = true
	}
	f.logMu.Unlock()
	if !seen {
		f.cfg.Log.Printf(format, args...)
	}
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindInfo
	kindLink
)

// entry is one name in a directory listing.
type entry struct {
	name   string
	kind   entryKind
	hidden bool // reachable by lookup, not listed: an id alias of a slug
	mtime  time.Time
	target string // kindLink

	// What the child is about; set according to the parent's level.
	org   *api.Organization
	app   *api.App
	build *api.Build
	art   api.Artifact // kindFile
	info  []byte       // kindInfo

	sizeMu sync.Mutex
	size   int64 // kindFile: -1 until known
}

type listing struct {
	at      time.Time
	byName  map[string]*entry
	visible []*entry // sorted by name
}

func newListing(ents []*entry) *listing {
	l := &listing{at: time.Now(), byName: make(map[string]*entry, len(ents))}
	for _, e := range ents {
		if _, dup := l.byName[e.name]; dup {
			continue // first wins; the API gave two objects one slug
		}
		l.byName[e.name] = e
		if !e.hidden {
			l.visible = append(l.visible, e)
		}
	}
	sort.Slice(l.visible, func(i, j int) bool { return l.visible[i].name < l.visible[j].name })
	return l
}

// safeName is what may become a file name.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00") && len(s) <= 255
}

var buildIDPattern = regexp.MustCompile(`^[a-fA-F0-9]{24}$`)

// listRoot lists the organizations the token can see, or those given with --org.
func (f *FS) listRoot(ctx context.Context) ([]*entry, error) {
	orgs, err := f.cfg.Client.Organizations(ctx)
	if err != nil {
		return nil, err
	}
	var ents []*entry
	for i := range orgs {
		o := &orgs[i]
		if len(f.cfg.Orgs) > 0 && !matchesAny(f.cfg.Orgs, o.ID, o.Slug) {
			continue
		}
		name := o.Slug
		if !safeName(name) {
			name = o.ID
		}
		if !safeName(name) {
			continue
		}
		ents = append(ents, &entry{name: name, kind: kindDir, org: o, mtime: f.started})
		if o.ID != name && safeName(o.ID) {
			ents = append(ents, &entry{name: o.ID, kind: kindLink, hidden: true, target: name, mtime: f.started})
		}
	}
	return ents, nil
}

func matchesAny(wanted []string, id, slug string) bool {
	for _, w := range wanted {
		if w == id || w == slug {
			return true
		}
	}
	return false
}

func (f *FS) listOrg(ctx context.Context, org *api.Organization) ([]*entry, error) {
	apps, err := f.cfg.Client.Apps(ctx, org.ID)
	if err != nil {
		return nil, err
	}
	var ents []*entry
	for i := range apps {
		a := &apps[i]
		name := a.Slug
		if !safeName(name) {
			name = a.ID
		}
		if !safeName(name) {
			continue
		}
		ents = append(ents, &entry{name: name, kind: kindDir, org: org, app: a, mtime: f.started})
		if a.ID != name && safeName(a.ID) {
			ents = append(ents, &entry{name: a.ID, kind: kindLink, hidden: true, target: name, mtime: f.started})
		}
	}
	return ents, nil
}

func (f *FS) listApp(ctx context.Context, org *api.Organization, app *api.App) ([]*entry, error) {
	builds, err := f.cfg.Client.Builds(ctx, org.ID, app.ID)
	if err != nil {
		return nil, err
	}
	var ents []*entry
	var latest *api.Build
	for i := range builds {
		b := &builds[i]
		if b.Status != api.StatusProcessed || !buildIDPattern.MatchString(b.ID) {
			continue
		}
		ents = append(ents, &entry{name: b.ID, kind: kindDir, org: org, app: app, build: b, mtime: b.CreatedAt})
		if latest == nil || b.CreatedAt.After(latest.CreatedAt) {
			latest = b
		}
	}
	if latest != nil {
		ents = append(ents, &entry{name: "latest", kind: kindLink, target: latest.ID, mtime: latest.CreatedAt})
	}
	return ents, nil
}

// listBuild lists a build's files. A processed build never changes, so
// this listing never expires.
func (f *FS) listBuild(org *api.Organization, app *api.App, b *api.Build) ([]*entry, error) {
	info, err := infoJSON(org, app, b)
	if err != nil {
		return nil, err
	}
	ents := []*entry{{name: "info.json", kind: kindInfo, info: info, mtime: b.CreatedAt}}
	for _, a := range b.Artifacts() {
		name := string(a.Type) + "." + a.Ext
		e := &entry{name: name, kind: kindFile, org: org, app: app, build: b, art: a, size: a.Size, mtime: b.CreatedAt}
		if a.Size < 0 && f.cfg.Disk != nil {
			if s, ok := f.cfg.Disk.Size(fileKey(b, a.Type)); ok {
				e.size = s
			}
		}
		ents = append(ents, e,
			&entry{name: string(a.Type), kind: kindLink, target: name, mtime: b.CreatedAt})
	}
	return ents, nil
}

func fileKey(b *api.Build, t api.DownloadType) cache.FileKey {
	return cache.FileKey{Build: b.ID, Type: string(t)}
}

// buildInfo is what info.json shows: the facts a script wants, without the
// API's storage internals (bucket keys, locations).
type buildInfo struct {
	ID           string            `json:"id"`
	Organization string            `json:"organization"`
	App          string            `json:"app"`
	AppName      string            `json:"appName"`
	Status       string            `json:"status"`
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
	CreatedAt    time.Time         `json:"createdAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
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

// remoteFile ties a build file's storage object to its cached view. It
// lives as long as the mount, so the storage URL outlives kernel FORGETs.
type remoteFile struct {
	obj  *api.Object
	once sync.Once
	file *cache.File
}

func (f *FS) remote(e *entry) *remoteFile {
	key := fileKey(e.build, e.art.Type)
	f.objMu.Lock()
	defer f.objMu.Unlock()
	r, ok := f.objects[key]
	if !ok {
		r = &remoteFile{obj: f.cfg.Client.Object(e.org.ID, e.app.ID, e.build.ID, e.art.Type, e.knownSize())}
		f.objects[key] = r
	}
	return r
}

// cached returns the cache view, once the size is known.
func (r *remoteFile) cached(c *cache.Cache, key cache.FileKey, size int64, checksum string) *cache.File {
	r.once.Do(func() { r.file = c.File(key, size, checksum, r.obj) })
	return r.file
}

func (e *entry) knownSize() int64 {
	e.sizeMu.Lock()
	defer e.sizeMu.Unlock()
	return e.size
}

// fileSize returns a file's exact size. Only a file the API gives no size
// for (an OTA manifest) costs a token, once: the size is kept on disk
// across mounts, since builds never change.
func (f *FS) fileSize(ctx context.Context, e *entry) (int64, error) {
	if s := e.knownSize(); s >= 0 {
		return s, nil
	}
	key := fileKey(e.build, e.art.Type)
	ch := f.group.DoChan("size:"+key.String(), func() (any, error) {
		// Detached: one interrupted caller must not fail the others.
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.IOTimeout)
		defer cancel()
		return f.remote(e).obj.Stat(ctx)
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
	s := r.Val.(int64)
	e.sizeMu.Lock()
	e.size = s
	e.sizeMu.Unlock()
	if f.cfg.Disk != nil {
		if err := f.cfg.Disk.SetSize(key, s); err != nil {
			f.logOnce("setsize:"+key.String(), "appliveryfs: keep size of %s: %v", key, err)
		}
	}
	return s, nil
}

// errno maps an error to what the caller of a FUSE operation sees.
func errno(ctx context.Context, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && isCanceled(err):
		return syscall.EINTR
	case api.IsUnauthorized(err), api.IsForbidden(err):
		return syscall.EACCES
	case api.IsNotProcessed(err):
		return syscall.EAGAIN
	case api.IsNotFound(err):
		return syscall.ENOENT
	}
	return syscall.EIO
}
