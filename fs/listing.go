package fs

import (
	"context"
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
	// skipped is what the answer held that the listing leaves out or
	// names otherwise, logged once by the refresh that meets it.
	skipped []skip
}

// skip is one object of an answer that could not be listed as the API
// named it.
type skip struct {
	key   string // tells it from the directory's other skips, across refreshes
	msg   string // what was done and why
	attrs []any
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
		// Once per name and directory, not per refresh: a bad name in
		// the API stays bad, and a log line a minute would bury others.
		for _, s := range nl.skipped {
			f.logOnce("skip:"+p+"\x00"+s.key, s.msg, append([]any{"path", "/" + p}, s.attrs...)...)
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
	f.logOnce("refresh:"+p+r.Err.Error(), "refresh failed, serving the previous listing", "path", "/"+p, errAttrs(r.Err))
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
	var objs []named
	for i := range orgs {
		o := &orgs[i]
		if len(f.cfg.Orgs) > 0 && !matchesAny(f.cfg.Orgs, o.ID, o.Slug) {
			continue
		}
		objs = append(objs, named{o.Slug, o.ID, &entry{kind: kindOrg, org: o, mtime: f.started}})
	}
	ents, skipped := nameAll("organization", objs, rootReserved)
	l := newListing(ents)
	l.skipped = skipped
	return l, nil
}

// rootReserved holds the names of the root that no organization can
// take: the mount's own status directory answers them, listed or not.
var rootReserved = map[string]bool{statusDirName: true}

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
	objs := make([]named, len(apps))
	for i := range apps {
		a := &apps[i]
		objs[i] = named{a.Slug, a.ID, &entry{kind: kindApp, org: org, app: a, mtime: f.started}}
	}
	ents, skipped := nameAll("app", objs, nil)
	l := newListing(ents)
	l.skipped = skipped
	return l, nil
}

// named is an organization or an app of an answer, to be named in its
// directory by nameAll.
type named struct {
	slug, id string
	e        *entry
}

// nameAll names each object by its slug, or by its id when the slug
// cannot be the object's name, and adds a hidden symlink from the id to
// the slug, so that scripts holding ids find the same directory. Names
// are never altered into something else: an object with neither a usable
// slug nor a usable id is left out. Every object not named by its slug
// is reported in the skips. what names the objects in messages;
// reserved names are taken by the directory itself.
//
// Where names collide, the API's own rule decides: it finds {org} and
// {app} by id first, then by slug, the first in its order. So an id
// always names its own object, a slug that is another object's id is
// not used, and of two objects with one slug the first keeps it and the
// other is named by its id. No name ever leads to another object than
// the one the API would find by it.
func nameAll(what string, objs []named, reserved map[string]bool) ([]*entry, []skip) {
	usable := func(name string) bool { return api.IsFileName(name) && !reserved[name] }
	idOwner := make(map[string]int, len(objs))
	for i, o := range objs {
		if _, dup := idOwner[o.id]; !dup {
			idOwner[o.id] = i
		}
	}
	var ents []*entry
	var skips []skip
	taken := make(map[string]bool, len(objs))
	note := func(o named, msg string) {
		skips = append(skips, skip{key: what + "\x00" + o.id + "\x00" + o.slug, msg: msg,
			attrs: []any{"slug", o.slug, "id", o.id}})
	}
	for i, o := range objs {
		// Requests name the object by its id: an empty one or a dot
		// segment would ask for another endpoint once a proxy cleans
		// the URL.
		if o.id == "" || o.id == "." || o.id == ".." {
			note(o, "skipped "+article(what)+" whose id cannot be used to ask for it")
			continue
		}
		if idOwner[o.id] != i {
			note(o, "skipped "+article(what)+" whose id is also the id of "+article(what)+" listed before it")
			continue
		}
		var why string // why the slug cannot name it
		switch owner, isID := idOwner[o.slug]; {
		case !api.IsFileName(o.slug):
			why = "cannot be a file name"
		case reserved[o.slug]:
			why = "is a name the mount keeps for itself"
		case isID && owner != i:
			why = "is the id of another " + what
		case taken[o.slug]:
			why = "is also the slug of " + article(what) + " listed before it"
		}
		name := o.slug
		if why != "" {
			if !usable(o.id) {
				if why == "cannot be a file name" {
					note(o, "skipped "+article(what)+" whose slug and id cannot be file names")
				} else {
					note(o, "skipped "+article(what)+" whose slug "+why+" and whose id cannot be a file name")
				}
				continue
			}
			name = o.id
			note(o, "listed "+article(what)+" by its id: its slug "+why)
		}
		taken[name] = true
		o.e.name = name
		ents = append(ents, o.e)
		if o.id != name && usable(o.id) {
			ents = append(ents, &entry{name: o.id, kind: kindLink, hidden: true, target: name, mtime: o.e.mtime})
		}
	}
	return ents, skips
}

// article puts "a" or "an" before what, for log messages.
func article(what string) string {
	if strings.ContainsRune("aeiou", rune(what[0])) {
		return "an " + what
	}
	return "a " + what
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
	var skipped []skip
	seen := make(map[string]bool, len(builds))
	for i := range builds {
		b := &builds[i]
		switch {
		case !api.IsBuildID(b.ID):
			skipped = append(skipped, skip{key: "build\x00" + b.ID, msg: "skipped a build whose id is not 24 hex digits",
				attrs: []any{"build", b.ID, "status", b.Status}})
		case seen[b.ID]:
			// The same build twice is no fault to report: pages are cut
			// by offset, so a build uploaded while the pages are read
			// pushes the last of one page onto the next.
		case b.Status == api.StatusProcessed:
			seen[b.ID] = true
			ents = append(ents, &entry{name: b.ID, kind: kindBuild, org: org, app: app, build: b, mtime: b.CreatedAt})
			skipped = appendBadNames(skipped, b)
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
	l.skipped = skipped
	return l, nil
}

// appendBadNames reports the version names and tags of b that
// api.NameBuilds gives no entry because they cannot be file names.
func appendBadNames(skipped []skip, b *api.Build) []skip {
	// A bad version name makes a bad name+code too: one line for both.
	v, code := b.VersionName, string(b.VersionCode)
	bad := ""
	switch {
	case v == "":
	case !api.IsFileName(v):
		bad = v
	case code != "" && !api.IsFileName(v+"+"+code):
		bad = v + "+" + code
	}
	if bad != "" {
		skipped = append(skipped, skip{key: "version\x00" + bad, msg: "left a version out of versions/: its name cannot be a file name",
			attrs: []any{"build", b.ID, "version", bad}})
	}
	for _, t := range b.Tags {
		if !api.IsFileName(t) {
			skipped = append(skipped, skip{key: "tag\x00" + t, msg: "left a tag out of tags/: it cannot be a file name",
				attrs: []any{"build", b.ID, "tag", t}})
		}
	}
	return skipped
}

// linkTo is a symlink named name to build b's directory, up is the way
// from the link's directory to the app's.
func linkTo(name, up string, b *api.Build) *entry {
	return &entry{name: name, kind: kindLink, target: up + b.ID, mtime: b.CreatedAt}
}
