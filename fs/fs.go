// Package fs presents Applivery builds as a read-only FUSE filesystem:
//
//	MOUNT/<org-slug>/<app-slug>/latest -> <build-id>
//	MOUNT/<org-slug>/<app-slug>/<build-id>/{info.json, file.<ext>, auto.<ext>, aab.aab}
//	MOUNT/<org-slug>/<app-slug>/<build-id>/{file,auto,aab} -> the files above
//
// It speaks FUSE only: Applivery is reached through package api and bytes
// are kept by package cache. The root, organizations and apps are listed
// directories (dirs.go, listing.go), refreshed after a TTL; a build's
// directory never changes and is built once (build.go); its files are
// read through the cache (file.go).
package fs

import (
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
)

// Sizes keeps the sizes learnt for files the API gives none for, across
// mounts; *disk.Cache implements it.
type Sizes interface {
	Size(key cache.FileKey) (int64, bool)
	SetSize(key cache.FileKey, size int64) error
}

// Config is what a mount needs.
type Config struct {
	Client    *api.Client
	Cache     *cache.Cache
	Sizes     Sizes    // may be nil: sizes are then learnt once per mount
	Orgs      []string // only these organizations (id or slug); empty for all
	UID, GID  uint32
	DirTTL    time.Duration // how long org and app listings are trusted
	IOTimeout time.Duration // bound on one read, retries included
	// DropPageCache lets the kernel drop a file's cached pages at every
	// open, as for files that may change. Builds never do; this exists to
	// measure what keeping them is worth.
	DropPageCache bool
	// CopyReads copies every READ's bytes into go-fuse's buffer instead of
	// replying from the cached block: a tuning lever to measure against.
	CopyReads bool
	Log       *slog.Logger
	// Status, when set, makes MOUNT/.appliveryfs/status: its text, made
	// at each open. The directory is not listed in the root.
	Status func() []byte
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
	// found holds, per app path, builds looked up by id that its last
	// listing did not show (uploaded since); the next listing replaces them.
	found map[string]map[string]*entry
	group singleflight.Group

	objMu   sync.Mutex
	objects map[cache.FileKey]*remoteFile

	logMu  sync.Mutex
	logged map[string]bool

	stats stats
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
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &FS{
		cfg:      cfg,
		started:  time.Now(),
		inos:     map[string]uint64{"": 1},
		nextIno:  2,
		listings: make(map[string]*listing),
		found:    make(map[string]map[string]*entry),
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
func (f *FS) logOnce(key, msg string, attrs ...any) {
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
		f.cfg.Log.Warn(msg, attrs...)
	}
}
