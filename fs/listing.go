package fs

import (
	"context"
	"sort"
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
	kindNames // versions/, tags/ and tags/<tag>/: names of an app's builds
)

// entry is one name in the listing of the root, an organization or an app.
type entry struct {
	name   string
	kind   entryKind
	hidden bool // reachable by lookup, not listed: an id alias of a slug
	mtime  time.Time
	target string // kindLink
	names  string // kindNames: the key of its listing in the app listing's names

	// What the child is: an organization, an app of org, a build of app.
	org   *api.Organization
	app   *api.App
	build *api.Build
}

type listing struct {
	at      time.Time
	byName  map[string]*entry
	visible []*entry // sorted by name
	// names holds, in an app's listing, the listings of versions/, tags/
	// and each tags/<tag>/, made from the same answer of the API.
	names map[string]*listing
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

// listing returns the entries of the directory at p, from cache while
// fresh. A refresh is shared by concurrent callers and survives one of
// them being interrupted; when it fails, the previous listing is served.
func (f *FS) listing(ctx context.Context, p string, list lister) (*listing, error) {
	f.listMu.Lock()
	l := f.listings[p]
	f.listMu.Unlock()
	if l != nil && time.Since(l.at) < f.cfg.DirTTL {
		return l, nil
	}
	ch := f.group.DoChan("dir:"+p, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.IOTimeout)
		defer cancel()
		nl, err := list(ctx)
		if err != nil {
			return nil, err
		}
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
	f.logOnce("list:"+p+r.Err.Error(), "refresh failed, serving the previous listing", "path", "/"+p, errAttrs(r.Err))
	f.listMu.Lock()
	if f.listings[p] == l {
		retry := *l
		retry.at = time.Now().Add(-f.cfg.DirTTL).Add(min(f.cfg.DirTTL, staleRetry))
		f.listings[p] = &retry
	}
	f.listMu.Unlock()
	return l, nil
}

// lister asks the API for a directory's entries.
type lister func(context.Context) (*listing, error)

// listRoot lists the organizations the token can see, or those given with --org.
func (f *FS) listRoot(ctx context.Context) (*listing, error) {
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
	return newListing(ents), nil
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
func (f *FS) listOrg(ctx context.Context, org *api.Organization) (*listing, error) {
	apps, err := f.cfg.Client.Apps(ctx, org.ID)
	if err != nil {
		return nil, err
	}
	var ents []*entry
	for i := range apps {
		a := &apps[i]
		ents = appendNamed(ents, a.Slug, a.ID, &entry{kind: kindApp, org: org, app: a, mtime: f.started})
	}
	return newListing(ents), nil
}

// appendNamed names e by its slug (by its id when the slug cannot be a
// file name) and adds a hidden symlink from the id to the slug, so that
// scripts holding ids find the same directory.
func appendNamed(ents []*entry, slug, id string, e *entry) []*entry {
	name := slug
	if !api.IsFileName(name) {
		name = id
	}
	if !api.IsFileName(name) {
		return ents
	}
	e.name = name
	ents = append(ents, e)
	if id != name && api.IsFileName(id) {
		ents = append(ents, &entry{name: id, kind: kindLink, hidden: true, target: name, mtime: e.mtime})
	}
	return ents
}

// listApp lists an app's processed builds, latest, and the versions/ and
// tags/ directories that name them.
func (f *FS) listApp(ctx context.Context, org *api.Organization, app *api.App) (*listing, error) {
	builds, err := f.cfg.Client.Builds(ctx, org.ID, app.ID)
	if err != nil {
		return nil, err
	}
	names := api.NameBuilds(builds)
	var ents []*entry
	for i := range builds {
		b := &builds[i]
		if b.Status == api.StatusProcessed && api.IsBuildID(b.ID) {
			ents = append(ents, &entry{name: b.ID, kind: kindBuild, org: org, app: app, build: b, mtime: b.CreatedAt})
		}
	}
	if names.Latest != nil {
		ents = append(ents, linkTo("latest", "", names.Latest))
	}
	ents = append(ents, &entry{name: "versions", kind: kindNames, names: "versions", mtime: f.started},
		&entry{name: "tags", kind: kindNames, names: "tags", mtime: f.started})
	l := newListing(ents)

	// Targets are relative, so that cp -a and rsync -a keep working links.
	var versions, tags []*entry
	for name, b := range names.Versions {
		versions = append(versions, linkTo(name, "../", b))
	}
	l.names = map[string]*listing{"versions": newListing(versions)}
	for tag, tagged := range names.Tags {
		key := "tags/" + tag
		tags = append(tags, &entry{name: tag, kind: kindNames, names: key, mtime: f.started})
		inTag := []*entry{linkTo("latest", "../../", tagged[0])}
		for _, b := range tagged {
			inTag = append(inTag, linkTo(b.ID, "../../", b))
		}
		l.names[key] = newListing(inTag)
	}
	l.names["tags"] = newListing(tags)
	return l, nil
}

// linkTo is a symlink named name to build b's directory, up is the way
// from the link's directory to the app's.
func linkTo(name, up string, b *api.Build) *entry {
	return &entry{name: name, kind: kindLink, target: up + b.ID, mtime: b.CreatedAt}
}
