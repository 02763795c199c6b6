package fs

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/appliveryfs/appliveryfs/api"
)

// staleRetry is how long a listing whose refresh failed is served before
// the API is asked again.
const staleRetry = 10 * time.Second

type entryKind int

const (
	kindOrg entryKind = iota
	kindApp
	kindBuild
	kindLink
)

// entry is one name in the listing of the root, an organization or an app.
type entry struct {
	name   string
	kind   entryKind
	hidden bool // reachable by lookup, not listed: an id alias of a slug
	mtime  time.Time
	target string // kindLink

	// What the child is: an organization, an app of org, a build of app.
	org   *api.Organization
	app   *api.App
	build *api.Build
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

// listing returns the entries of the directory at p, from cache while
// fresh. A refresh is shared by concurrent callers and survives one of
// them being interrupted; when it fails, the previous listing is served.
func (f *FS) listing(ctx context.Context, p string, list func(context.Context) ([]*entry, error)) (*listing, error) {
	f.listMu.Lock()
	l := f.listings[p]
	f.listMu.Unlock()
	if l != nil && time.Since(l.at) < f.cfg.DirTTL {
		return l, nil
	}
	ch := f.group.DoChan("dir:"+p, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.IOTimeout)
		defer cancel()
		ents, err := list(ctx)
		if err != nil {
			return nil, err
		}
		nl := newListing(ents)
		f.listMu.Lock()
		f.listings[p] = nl
		delete(f.found, p) // listed now, or gone upstream
		f.listMu.Unlock()
		return nl, nil
	})
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.Err == nil {
		return r.Val.(*listing), nil
	}
	if l == nil {
		return nil, r.Err
	}
	// A stale listing beats an error: the API may be briefly down. Trust
	// it a while longer, so that every lookup does not wait for another
	// failing refresh.
	f.logOnce("list:"+p+r.Err.Error(), "appliveryfs: refresh /%s: %v (serving the previous listing)", p, r.Err)
	f.listMu.Lock()
	if f.listings[p] == l {
		retry := *l
		retry.at = time.Now().Add(-f.cfg.DirTTL).Add(min(f.cfg.DirTTL, staleRetry))
		f.listings[p] = &retry
	}
	f.listMu.Unlock()
	return l, nil
}

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
		ents = appendNamed(ents, o.Slug, o.ID, &entry{kind: kindOrg, org: o, mtime: f.started})
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

// listOrg lists an organization's apps.
func (f *FS) listOrg(ctx context.Context, org *api.Organization) ([]*entry, error) {
	apps, err := f.cfg.Client.Apps(ctx, org.ID)
	if err != nil {
		return nil, err
	}
	var ents []*entry
	for i := range apps {
		a := &apps[i]
		ents = appendNamed(ents, a.Slug, a.ID, &entry{kind: kindApp, org: org, app: a, mtime: f.started})
	}
	return ents, nil
}

// appendNamed names e by its slug (by its id when the slug cannot be a
// file name) and adds a hidden symlink from the id to the slug, so that
// scripts holding ids find the same directory.
func appendNamed(ents []*entry, slug, id string, e *entry) []*entry {
	name := slug
	if !safeName(name) {
		name = id
	}
	if !safeName(name) {
		return ents
	}
	e.name = name
	ents = append(ents, e)
	if id != name && safeName(id) {
		ents = append(ents, &entry{name: id, kind: kindLink, hidden: true, target: name, mtime: e.mtime})
	}
	return ents
}

// listApp lists an app's processed builds and latest.
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
		ents = append(ents, &entry{name: b.ID, kind: kindBuild, org: org, app: app, build: b, mtime: b.CreatedAt})
		if latest == nil || b.CreatedAt.After(latest.CreatedAt) {
			latest = b
		}
	}
	if latest != nil {
		ents = append(ents, &entry{name: "latest", kind: kindLink, target: latest.ID, mtime: latest.CreatedAt})
	}
	return ents, nil
}
