package emulator

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Dataset is what a Server serves: organizations, their apps and the
// apps' builds. Build it before Start. While a server runs, change it only
// through Dataset.AddBuild and Server.MutateObject, which synchronize with
// the handlers.
type Dataset struct {
	Orgs []*Org

	// mu guards the tree and every Object.Data once a server uses the
	// dataset: handlers read under it, AddBuild and MutateObject write.
	mu sync.RWMutex
}

// Org is an organization (workspace).
type Org struct {
	ID, Name, Slug string
	Apps           []*App
}

// App is an application of an organization.
type App struct {
	ID, Name, Slug string
	Builds         []*Build
}

// Build statuses.
const (
	statusPending    = "pending"
	statusInProgress = "in_progress"
	statusProcessed  = "processed"
	statusError      = "error"
)

// Download types accepted by the downloadToken endpoint.
const (
	typeAuto = "auto"
	typeFile = "file"
	typeAAB  = "aab"
)

// Build is one uploaded build of an app.
type Build struct {
	ID                string // 24 lowercase hex
	Status            string // pending, in_progress, processed, error
	OS                string // ios, android, macos
	BuildPlatform     string // ios, android, macos
	VersionName       string
	VersionCode       string
	OriginalExtension string // "aab", "apk", "ipa", "pkg" (no dot)
	CreatedAt         time.Time
	Changelog         string
	Tags              []string
	PackageName       string    // Android packageName or Apple CFBundleIdentifier
	MinOS             string    // minSDKVersion / MinimumOSVersion
	EditedAt          time.Time // set by EditBuild; updatedAt is never earlier

	// Objects holds the bytes served per download type ("auto", "file",
	// "aab"). On Android "auto" and "file" are the same universal APK: one
	// key is enough, the other falls back to it. On Apple platforms "auto"
	// is the OTA manifest, which the server writes itself when the key is
	// absent because it must point at the server's own download host.
	Objects map[string]*Object
}

// Object is a stored file. Treat Data as read-only: Server.MutateObject
// replaces the slice rather than writing into it, so responses in flight
// keep reading consistent bytes, and SampleData shares slices between
// datasets.
type Object struct {
	Name string // original file name, e.g. "app-release-universal.apk"
	Data []byte
}

func (b *Build) isApple() bool { return b.OS == "ios" || b.OS == "macos" }

// AddBuild adds b to an app, both found by id or slug. An empty b.ID is
// set to NewID(). It is safe to call while a server uses the dataset.
func (d *Dataset) AddBuild(orgSlug, appSlug string, b *Build) error {
	if b == nil {
		return errors.New("emulator: AddBuild: nil build")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	org := d.org(orgSlug)
	if org == nil {
		return fmt.Errorf("emulator: AddBuild: no organization %q", orgSlug)
	}
	app := org.app(appSlug)
	if app == nil {
		return fmt.Errorf("emulator: AddBuild: no app %q in %q", appSlug, orgSlug)
	}
	if b.ID == "" {
		b.ID = NewID()
	}
	if !isObjectID(b.ID) {
		return fmt.Errorf("emulator: AddBuild: id %q is not 24 lowercase hex digits", b.ID)
	}
	if _, _, dup := d.locate(b.ID); dup != nil {
		return fmt.Errorf("emulator: AddBuild: duplicate build id %s", b.ID)
	}
	app.Builds = append(app.Builds, b)
	return nil
}

// EditBuild changes what Applivery lets users edit after upload (PUT
// /v1/integrations/builds/{id}, shared/applivery-api.md): the version
// name, the tags and the changelog. It is safe to call while a server
// uses the dataset.
func (d *Dataset) EditBuild(id, versionName string, tags []string, changelog string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, _, b := d.locate(id)
	if b == nil {
		return fmt.Errorf("emulator: EditBuild: no build %s", id)
	}
	b.VersionName, b.Tags, b.Changelog = versionName, append([]string(nil), tags...), changelog
	b.EditedAt = time.Now().UTC()
	return nil
}

// RemoveBuild deletes a build, as a user deleting it on Applivery does. It
// is safe to call while a server uses the dataset.
func (d *Dataset) RemoveBuild(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, app, b := d.locate(id)
	if b == nil {
		return fmt.Errorf("emulator: RemoveBuild: no build %s", id)
	}
	app.Builds = slices.DeleteFunc(app.Builds, func(x *Build) bool { return x == b })
	return nil
}

// org finds an organization by id, then by slug, as the API does.
func (d *Dataset) org(ref string) *Org {
	return byRef(d.Orgs, ref, func(o *Org) string { return o.ID }, func(o *Org) string { return o.Slug })
}

// app finds an app by id, then by slug.
func (o *Org) app(ref string) *App {
	return byRef(o.Apps, ref, func(a *App) string { return a.ID }, func(a *App) string { return a.Slug })
}

// byRef finds the item whose id is ref or, failing that, the first whose
// slug is. Ids go first, as in the API, so an id wins over another item's
// slug that happens to spell it.
func byRef[T any](items []*T, ref string, id, slug func(*T) string) *T {
	for _, key := range [...]func(*T) string{id, slug} {
		for _, it := range items {
			if key(it) == ref {
				return it
			}
		}
	}
	return nil
}

func (a *App) build(id string) *Build {
	for _, b := range a.Builds {
		if b.ID == id {
			return b
		}
	}
	return nil
}

// locate finds a build anywhere in the dataset.
func (d *Dataset) locate(buildID string) (*Org, *App, *Build) {
	for _, o := range d.Orgs {
		for _, a := range o.Apps {
			if b := a.build(buildID); b != nil {
				return o, a, b
			}
		}
	}
	return nil, nil, nil
}

// isObjectID reports whether s looks like a MongoDB ObjectId as the
// emulator stores them: 24 lowercase hex digits.
func isObjectID(s string) bool {
	if len(s) != 24 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseObjectID accepts an id in either case, as the API's
// ^[a-fA-F0-9]{24}$ pattern does, and returns it in stored form.
func parseObjectID(s string) (string, bool) {
	s = strings.ToLower(s)
	return s, isObjectID(s)
}

// idSeq generates ObjectId-looking ids: a fixed 4-byte "timestamp" prefix
// and a mixed counter. The mixing is a bijection, so ids never repeat
// within a sequence, and sequences with different prefixes never collide.
type idSeq struct {
	prefix uint32
	n      atomic.Uint64
}

func (q *idSeq) next() string {
	return fmt.Sprintf("%08x%016x", q.prefix, mix64(q.n.Add(1)))
}

// mix64 is the SplitMix64 finalizer, a bijection on uint64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// newIDs is the process-wide sequence behind NewID; SampleData uses its
// own so that it returns the same ids on every call.
var newIDs = idSeq{prefix: 0x66e2b7d0}

// NewID returns a fresh id of 24 lowercase hex digits, unique within the
// process and distinct from SampleData's ids.
func NewID() string { return newIDs.next() }
