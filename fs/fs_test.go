package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

func TestErrnoMapping(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want syscall.Errno
	}{
		{ctx, nil, 0},
		{ctx, &api.Error{StatusCode: 404, Code: api.CodeNotFound}, syscall.ENOENT},
		{ctx, fmt.Errorf("list: %w", &api.Error{StatusCode: 401, Code: api.CodeTokenNotValid}), syscall.EACCES},
		{ctx, &api.Error{StatusCode: 403}, syscall.EACCES},
		{ctx, &api.Error{StatusCode: 400, Code: api.CodeNotProcessed}, syscall.EAGAIN},
		{ctx, &api.Error{StatusCode: 503}, syscall.EIO},
		{ctx, context.DeadlineExceeded, syscall.EIO}, // our own deadline: the read failed
		{cancelled, context.Canceled, syscall.EINTR}, // the caller was interrupted
		{ctx, api.ErrSizeMismatch, syscall.EIO},
	} {
		if got := errno(tc.ctx, tc.err); got != tc.want {
			t.Errorf("errno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestListingKeepsFirstOfDuplicateNamesAndHidesAliases(t *testing.T) {
	l := newListing([]*entry{
		{name: "b", kind: kindApp},
		{name: "a", kind: kindApp, target: "first"},
		{name: "a", kind: kindApp, target: "second"},
		{name: "65f0c3a112ae30237b17df14", kind: kindLink, hidden: true, target: "a"},
	})
	if len(l.visible) != 2 || l.visible[0].name != "a" || l.visible[1].name != "b" {
		t.Errorf("visible = %v", l.visible)
	}
	if l.byName["a"].target != "first" {
		t.Error("a duplicate name replaced the first entry")
	}
	if _, ok := l.byName["65f0c3a112ae30237b17df14"]; !ok {
		t.Error("hidden alias not reachable by name")
	}
}

func TestSymlinkInodeFollowsTarget(t *testing.T) {
	f := New(Config{})
	a := f.ino(inoKey("o/a/latest", &entry{kind: kindLink, target: "1"}))
	b := f.ino(inoKey("o/a/latest", &entry{kind: kindLink, target: "2"}))
	c := f.ino(inoKey("o/a/latest", &entry{kind: kindLink, target: "1"}))
	if a == b || a != c {
		t.Errorf("inodes %d %d %d: a new target needs a new inode, the same target the same", a, b, c)
	}
	if d := f.ino(inoKey("o/a/x", &entry{kind: kindBuild})); d == a || d == b {
		t.Error("inode numbers collide")
	}
}

func TestInfoJSON(t *testing.T) {
	b := &api.Build{ID: "65f0c3a112ae30237b17df14", Status: api.StatusProcessed, OS: "ios", BuildPlatform: "ios", VersionName: "1.0"}
	b.Files = []api.BuildFile{{Type: "package"}}
	b.Files[0].File.Size = api.FlexInt{Value: 1234, Valid: true}
	b.Files[0].File.Checksum = "abc"
	out, err := infoJSON(&api.Organization{Slug: "acme"}, &api.App{Slug: "app", Name: "App"}, b)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("info.json is not JSON: %v\n%s", err, out)
	}
	files := got["files"].(map[string]any)
	if files["file.ipa"].(map[string]any)["size"].(float64) != 1234 || files["auto.plist"].(map[string]any)["size"] != nil {
		t.Errorf("files = %v", files)
	}
	if got["organization"] != "acme" || got["id"] != b.ID {
		t.Errorf("info.json = %s", out)
	}
}

// TestHostileNameAll: names the API gives that cannot be file names, or
// that collide, never make an entry that is not a file name, never list a
// name twice, and never lead to another object than the API would find
// by that name (ids first, then slugs, the first in the API's order).
func TestHostileNameAll(t *testing.T) {
	id := func(n int) string { return fmt.Sprintf("65f0c3a112ae30237b17df%02d", n) }
	long := strings.Repeat("s", 300)
	objs := []named{
		{"acme", id(1), &entry{}}, // by slug, id(1) an alias
		{"", id(2), &entry{}},     // by id: the slug cannot be a file name
		{".", id(3), &entry{}},    // by id, as are the next four
		{"..", id(4), &entry{}},
		{"a/b", id(5), &entry{}},
		{"x\x00y", id(6), &entry{}},
		{long, id(7), &entry{}},
		{"twin", id(8), &entry{}},          // keeps the slug
		{"twin", id(9), &entry{}},          // by id: the slug is taken
		{id(1), id(10), &entry{}},          // by id: the slug is another's id
		{".appliveryfs", id(11), &entry{}}, // by id: reserved
		{id(12), id(12), &entry{}},         // slug and id agree: no alias
		{"dots", "..", &entry{}},           // skipped: the id cannot address it
		{"empty-id", "", &entry{}},         // skipped: the id cannot address it
		{"../x", "p/q", &entry{}},          // skipped: neither is a file name
		{"again", id(1), &entry{}},         // skipped: another has the id
		{"twin", "q/r", &entry{}},          // skipped: slug taken, id no file name
	}
	owner := map[*entry]string{} // entry -> the id of its object
	for _, o := range objs {
		owner[o.e] = o.id
	}
	ents, skips := nameAll("app", objs, map[string]bool{".appliveryfs": true})
	l := newListing(ents)

	var visible []string
	for _, e := range l.visible {
		visible = append(visible, e.name)
	}
	want := []string{id(2), id(3), id(4), id(5), id(6), id(7), id(9), id(10), id(11), id(12), "acme", "twin"}
	if strings.Join(visible, " ") != strings.Join(want, " ") {
		t.Errorf("visible names\n got %q\nwant %q", visible, want)
	}
	if len(ents) != len(l.byName) {
		t.Errorf("%d entries for %d names: a name was given twice", len(ents), len(l.byName))
	}
	for _, e := range ents {
		if !api.IsFileName(e.name) {
			t.Errorf("entry %q is not a file name", e.name)
		}
		if e.kind == kindLink {
			dir := l.byName[e.target]
			if dir == nil || dir.kind == kindLink || owner[dir] != e.name {
				t.Errorf("alias %s -> %q does not lead to the object with that id", e.name, e.target)
			}
			continue
		}
		// The API finds a name by id first: a name that is an id is that object's.
		if o, isID := owner[e]; isID && api.IsBuildID(e.name) && e.name != o {
			t.Errorf("%s names the object %s", e.name, o)
		}
	}
	if got := l.byName["twin"]; got == nil || owner[got] != id(8) {
		t.Errorf("twin is not the first object with that slug")
	}
	if l.byName[id(12)] == nil || l.byName[id(12)].kind == kindLink {
		t.Errorf("an object whose slug is its id is not listed once by it")
	}
	// Every object not named by its slug says so, once.
	if len(skips) != 14 {
		t.Errorf("%d skips, want 14 (one per object not named by its slug):", len(skips))
		for _, s := range skips {
			t.Logf("  %s %v", s.msg, s.attrs)
		}
	}
	keys := map[string]bool{}
	for _, s := range skips {
		if keys[s.key] {
			t.Errorf("two skips with key %q", s.key)
		}
		keys[s.key] = true
	}
}

// TestHostileListingsLogSkipsOnce lists, through the emulator, an answer
// full of bad names, repeatedly: each is logged once, not per refresh.
func TestHostileListingsLogSkipsOnce(t *testing.T) {
	good := &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "android", BuildPlatform: "android",
		VersionName: "1.0/beta", VersionCode: "7", Tags: []string{"qa", "a/b", ".."}, CreatedAt: time.Now().Add(-time.Hour),
		Objects: map[string]*emulator.Object{"file": {Name: "app.apk", Data: []byte("apk")}}}
	bad := &emulator.Build{ID: "../../../etc/passwd", Status: "processed", OS: "android", CreatedAt: time.Now()}
	data := &emulator.Dataset{Orgs: []*emulator.Org{
		{ID: emulator.NewID(), Slug: "acme", Apps: []*emulator.App{
			{ID: emulator.NewID(), Slug: "field", Builds: []*emulator.Build{good, bad, good}}, // good twice, as a page shift gives
			{ID: emulator.NewID(), Slug: "field"},
			{ID: emulator.NewID(), Slug: ".."},
			{ID: "..", Slug: "dots"},
		}},
		{ID: "a/b", Slug: "../x"},
	}}
	emu, err := emulator.Start(emulator.Options{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	client, err := api.NewClient(api.Config{APIURL: emu.APIURL(), DownloadURL: emu.DownloadURL(), Token: emu.Token()})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	f := New(Config{Client: client, DirTTL: time.Nanosecond, Log: slog.New(slog.NewJSONHandler(&buf, nil))})
	ctx := context.Background()
	var root, org, app *listing
	for range 3 {
		if root, err = f.listing(ctx, "", f.listRoot); err != nil {
			t.Fatal(err)
		}
		e := root.byName["acme"]
		if org, err = f.listing(ctx, "acme", func(ctx context.Context) (*listing, error) { return f.listOrg(ctx, e.org) }); err != nil {
			t.Fatal(err)
		}
		a := org.byName["field"]
		if app, err = f.listing(ctx, "acme/field", func(ctx context.Context) (*listing, error) { return f.listApp(ctx, a.org, a.app) }); err != nil {
			t.Fatal(err)
		}
	}
	names := func(l *listing) (out []string) {
		for _, e := range l.visible {
			out = append(out, e.name)
		}
		return out
	}
	if got := names(root); len(got) != 1 || got[0] != "acme" {
		t.Errorf("root lists %q", got)
	}
	if got := names(org); len(got) != 3 || got[2] != "field" {
		t.Errorf("acme lists %q, want two ids and field", got)
	}
	if got := strings.Join(names(app), " "); got != good.ID+" latest tags versions" {
		t.Errorf("acme/field lists %q", got)
	}
	if got := strings.Join(names(app.names["tags"]), " "); got != "qa" {
		t.Errorf("tags/ lists %q", got)
	}
	if got := strings.Join(names(app.names["versions"]), " "); got != "" {
		t.Errorf("versions/ lists %q", got)
	}

	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Msg, Path string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		counts[rec.Path+": "+rec.Msg]++
	}
	want := map[string]int{
		"/: skipped an organization whose slug and id cannot be file names":                    1,
		"/acme: listed an app by its id: its slug is also the slug of an app listed before it": 1,
		"/acme: listed an app by its id: its slug cannot be a file name":                       1,
		"/acme: skipped an app whose id cannot be used to ask for it":                          1,
		"/acme/field: skipped a build whose id is not 24 hex digits":                           1,
		"/acme/field: left a version out of versions/: its name cannot be a file name":         1,
		"/acme/field: left a tag out of tags/: it cannot be a file name":                       2,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("log after three refreshes:\n got %v\nwant %v\n%s", counts, want, buf.String())
	}
}
