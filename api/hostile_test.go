package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// TestHostileAnswers: every API call, answered with a body that is not
// JSON, is cut short, is a proxy's HTML page or says success without data,
// fails with an error that names the operation and says what was wrong;
// only the answers a retry may mend (a cut connection, a 5xx) are retried.
func TestHostileAnswers(t *testing.T) {
	emu, c := startEmu(t)
	b := sampleBuild(t, emu, "field-app", "2.4.0")
	calls := []struct {
		kind, op string
		call     func(context.Context) error
	}{
		{"organizations", "list organizations", func(ctx context.Context) error {
			_, err := c.Organizations(ctx)
			return err
		}},
		{"apps", "list apps of acme", func(ctx context.Context) error {
			_, err := c.Apps(ctx, "acme")
			return err
		}},
		{"builds", "list builds of acme/field-app", func(ctx context.Context) error {
			_, err := c.Builds(ctx, "acme", "field-app")
			return err
		}},
		{"build", "get build acme/field-app/" + b.ID, func(ctx context.Context) error {
			_, err := c.Build(ctx, "acme", "field-app", b.ID)
			return err
		}},
		{"downloadToken", "mint file token for build " + b.ID + " of acme/field-app", func(ctx context.Context) error {
			_, err := c.MintToken(ctx, "acme", "field-app", b.ID, api.File)
			return err
		}},
	}
	answers := []struct {
		name    string
		rewrite func(emulator.APIAnswer) emulator.APIAnswer
		says    string // in the error
		retried bool
	}{
		{"malformed JSON", emulator.Corrupted, "not an Applivery envelope", false},
		{"truncated JSON", emulator.Truncated, "not an Applivery envelope (unexpected end of JSON input)", false},
		{"connection cut mid-answer", emulator.CutShort, "unexpected EOF", true},
		{"HTML 502 page", emulator.HTMLErrorPage(502), `HTTP 502: "<html> <head><title>502 Bad Gateway</title>`, true},
		{"success without data", emulator.WithoutData, "answer has no data", false},
	}
	for _, a := range answers {
		for _, call := range calls {
			t.Run(a.name+"/"+call.kind, func(t *testing.T) {
				emu.SetAPIOverride(emulator.ForKind(call.kind, a.rewrite))
				defer emu.SetAPIOverride(nil)
				emu.ResetCounters()
				err := call.call(ctxTimeout(t, 20*time.Second))
				if err == nil {
					t.Fatal("no error")
				}
				if !strings.HasPrefix(err.Error(), call.op+": ") || !strings.Contains(err.Error(), a.says) {
					t.Errorf("error %q, want %q: ... %q", err, call.op, a.says)
				}
				if got := errors.Is(err, api.ErrServerError); got != (a.name == "HTML 502 page") {
					t.Errorf("errors.Is(err, ErrServerError) = %v: %v", got, err)
				}
				if errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrUnauthorized) {
					t.Errorf("a broken answer is classified as not found or unauthorized: %v", err)
				}
				// A mint answer holds a live, unspent download token: no
				// error may quote it, whole or in part, as it would end up
				// in the mount's log.
				for _, secret := range emu.IssuedSecrets() {
					if strings.Contains(err.Error(), secret[:len(secret)/2]) {
						t.Errorf("client.go decodeEnvelope quotes the start of a 2xx body it cannot decode, "+
							"which for MintToken is the download token; the error would log it: %v", err)
					}
				}
				want := int64(1)
				if a.retried {
					want = 4 // the client's attempts per call
				}
				if got := emu.Counters().APICalls[call.kind]; got != want {
					t.Errorf("%d requests, want %d", got, want)
				}
			})
		}
	}
}

// TestHostileNamesPassThrough: the client hands over the names the API
// gives as they are; deciding what can be a file name is the caller's
// job (fs, ls). An id that is not one path segment never reaches another
// endpoint: it is escaped into one segment.
func TestHostileNamesPassThrough(t *testing.T) {
	slugs := []string{"", ".", "..", "a/b", "x\x00y", strings.Repeat("long", 75), "twin", "twin"}
	var apps []*emulator.App
	for _, s := range slugs {
		apps = append(apps, &emulator.App{ID: emulator.NewID(), Name: "App", Slug: s})
	}
	data := &emulator.Dataset{Orgs: []*emulator.Org{
		{ID: emulator.NewID(), Slug: "acme", Apps: apps},
		{ID: "a/b", Slug: "../x", Apps: []*emulator.App{{ID: emulator.NewID(), Slug: "hidden"}}},
	}}
	emu, err := emulator.Start(emulator.Options{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	c := newClient(t, emu.APIURL(), emu.DownloadURL(), emu.Token())
	ctx := ctxTimeout(t, 10*time.Second)

	orgs, err := c.Organizations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(orgs) != 2 || orgs[1].ID != "a/b" || orgs[1].Slug != "../x" {
		t.Errorf("organizations = %+v", orgs)
	}
	got, err := c.Apps(ctx, data.Orgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(slugs) {
		t.Fatalf("%d apps, want %d", len(got), len(slugs))
	}
	for i, a := range got {
		if a.Slug != slugs[i] || a.ID != apps[i].ID {
			t.Errorf("app %d = %q %q, want %q %q", i, a.ID, a.Slug, apps[i].ID, slugs[i])
		}
	}
	// "a/b" goes as a%2Fb, one segment that no endpoint has: not found,
	// not the apps of an organization "a".
	emu.ResetCounters()
	if _, err := c.Apps(ctx, "a/b"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("apps of the organization with id a/b: %v, want not found", err)
	}
	if calls := emu.Counters().APICalls; calls["apps"] != 0 {
		t.Errorf("the id a/b reached the apps endpoint: %v", calls)
	}
}

// TestHostileManyBuilds: 10,000 builds come in 100 pages of 100, each
// once; a server that claims more pages than it has is followed only
// until a page comes back empty.
func TestHostileManyBuilds(t *testing.T) {
	const n = 10000
	builds := make([]*emulator.Build, n)
	start := time.Now().Add(-n * time.Minute).UTC().Truncate(time.Millisecond)
	for i := range builds {
		builds[i] = &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "android", BuildPlatform: "android",
			VersionName: fmt.Sprint(i), CreatedAt: start.Add(time.Duration(i) * time.Minute)}
	}
	data := &emulator.Dataset{Orgs: []*emulator.Org{{ID: emulator.NewID(), Slug: "acme",
		Apps: []*emulator.App{{ID: emulator.NewID(), Slug: "big", Builds: builds}}}}}
	emu, err := emulator.Start(emulator.Options{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	c := newClient(t, emu.APIURL(), emu.DownloadURL(), emu.Token())
	ctx := ctxTimeout(t, 60*time.Second)

	got, err := c.Builds(ctx, "acme", "big")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, b := range got {
		seen[b.ID] = true
	}
	if len(got) != n || len(seen) != n {
		t.Errorf("%d builds, %d distinct; want %d", len(got), len(seen), n)
	}
	if len(got) > 0 && got[0].ID != builds[n-1].ID {
		t.Errorf("first build %s, want the newest %s", got[0].ID, builds[n-1].ID)
	}
	if calls := emu.Counters().APICalls["builds"]; calls != n/100 {
		t.Errorf("%d pages, want %d", calls, n/100)
	}

	// Every page says there is another, and names page 1 as the next.
	emu.SetAPIOverride(emulator.ForKind("builds", func(a emulator.APIAnswer) emulator.APIAnswer {
		var env struct{ Data map[string]any }
		if err := json.Unmarshal(a.Body, &env); err != nil {
			t.Errorf("emulator answer: %v", err)
			return a
		}
		env.Data["hasNextPage"], env.Data["nextPage"] = true, 1
		a.Body, _ = json.Marshal(map[string]any{"status": true, "data": env.Data})
		return a
	}))
	emu.ResetCounters()
	got, err = c.Builds(ctx, "acme", "big")
	if err != nil || len(got) != n {
		t.Errorf("with hasNextPage always true: %d builds, %v", len(got), err)
	}
	if calls := emu.Counters().APICalls["builds"]; calls != n/100+1 {
		t.Errorf("with hasNextPage always true: %d pages, want %d and one empty", calls, n/100)
	}
}
