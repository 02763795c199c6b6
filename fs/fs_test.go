package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"

	"github.com/appliveryfs/appliveryfs/api"
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
