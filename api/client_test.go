package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// ---------------------------------------------------------------------------
// Helpers shared by client_test.go and object_test.go.

// startEmu starts an emulator on 127.0.0.1 with the sample data and a
// client pointed at it.
func startEmu(t *testing.T) (*emulator.Server, *api.Client) {
	t.Helper()
	emu, err := emulator.Start(emulator.Options{Addr: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	return emu, newClient(t, emu.APIURL(), emu.DownloadURL(), emu.Token())
}

func newClient(t *testing.T, apiURL, dlURL, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(api.Config{APIURL: apiURL, DownloadURL: dlURL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// localServer starts an httptest server listening on 127.0.0.1 only.
func localServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// sampleBuild finds a build of the sample data by app slug and version name.
func sampleBuild(t *testing.T, emu *emulator.Server, appSlug, versionName string) *emulator.Build {
	t.Helper()
	for _, o := range emu.Data().Orgs {
		for _, a := range o.Apps {
			if a.Slug != appSlug {
				continue
			}
			for _, b := range a.Builds {
				if b.VersionName == versionName {
					return b
				}
			}
		}
	}
	t.Fatalf("no build %s of %s in the sample data", versionName, appSlug)
	return nil
}

func sampleApp(t *testing.T, emu *emulator.Server, orgSlug, appSlug string) (*emulator.Org, *emulator.App) {
	t.Helper()
	for _, o := range emu.Data().Orgs {
		if o.Slug != orgSlug {
			continue
		}
		for _, a := range o.Apps {
			if a.Slug == appSlug {
				return o, a
			}
		}
	}
	t.Fatalf("no app %s/%s in the sample data", orgSlug, appSlug)
	return nil, nil
}

func emuObject(t *testing.T, emu *emulator.Server, buildID, typ string) []byte {
	t.Helper()
	data, ok := emu.Object(buildID, typ)
	if !ok {
		t.Fatalf("emulator has no %s object for build %s", typ, buildID)
	}
	return data
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// envelopeServer answers every request with one canned response.
func envelopeServer(t *testing.T, status int, header http.Header, body string) *httptest.Server {
	t.Helper()
	return localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
}

// ---------------------------------------------------------------------------
// Construction.

func TestNewClientValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  api.Config
		ok   bool
	}{
		{"defaults", api.Config{Token: "x"}, true},
		{"no token", api.Config{APIURL: "http://127.0.0.1:1"}, false},
		{"blank token", api.Config{Token: "  \t"}, false},
		{"bad api scheme", api.Config{APIURL: "ftp://h", Token: "x"}, false},
		{"api without host", api.Config{APIURL: "http://", Token: "x"}, false},
		{"relative api", api.Config{APIURL: "/v1", Token: "x"}, false},
		{"bad download scheme", api.Config{DownloadURL: "file:///tmp", Token: "x"}, false},
		{"trailing slash", api.Config{APIURL: "http://127.0.0.1:1/", DownloadURL: "https://h/", Token: "x"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := api.NewClient(tc.cfg)
			if tc.ok && (err != nil || c == nil) {
				t.Fatalf("NewClient: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("NewClient accepted a bad config")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Endpoints against the emulator.

func TestOrganizations(t *testing.T) {
	emu, c := startEmu(t)
	orgs, err := c.Organizations(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := emu.Data().Orgs
	if len(orgs) != len(want) {
		t.Fatalf("got %d organizations, want %d", len(orgs), len(want))
	}
	for i, o := range orgs {
		if o.ID != want[i].ID || o.Name != want[i].Name || o.Slug != want[i].Slug {
			t.Errorf("org %d = %+v, want %s %q %q", i, o, want[i].ID, want[i].Name, want[i].Slug)
		}
	}
	if got := emu.Counters().APICalls["organizations"]; got != 1 {
		t.Errorf("organizations calls = %d, want 1", got)
	}
}

func TestAppsByIDAndSlug(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	acme := emu.Data().Orgs[0]
	for _, ref := range []string{acme.Slug, acme.ID} {
		apps, err := c.Apps(ctx, ref)
		if err != nil {
			t.Fatalf("Apps(%s): %v", ref, err)
		}
		if len(apps) != len(acme.Apps) {
			t.Fatalf("Apps(%s): %d apps, want %d", ref, len(apps), len(acme.Apps))
		}
		for i, a := range apps {
			if a.ID != acme.Apps[i].ID || a.Slug != acme.Apps[i].Slug || a.Name != acme.Apps[i].Name {
				t.Errorf("Apps(%s)[%d] = %+v, want %s/%s", ref, i, a, acme.Apps[i].ID, acme.Apps[i].Slug)
			}
		}
		byslug := map[string]api.App{}
		for _, a := range apps {
			byslug[a.Slug] = a
		}
		if got := byslug["field-app"].OSs; len(got) != 1 || got[0] != "android" {
			t.Errorf("field-app oss = %v", got)
		}
		if got := byslug["field-ios"].BuildPlatforms; len(got) != 1 || got[0] != "ios" {
			t.Errorf("field-ios buildPlatforms = %v", got)
		}
	}
	_, err := c.Apps(ctx, "no-such-org")
	if !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Apps(no-such-org) = %v, want ErrNotFound", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != api.CodeNotFound {
		t.Errorf("Apps(no-such-org) error = %#v, want 404/3001", ae)
	}
	// Another organization lists its own apps only.
	beta := emu.Data().Orgs[1]
	apps, err := c.Apps(ctx, beta.Slug)
	if err != nil {
		t.Fatalf("Apps(%s): %v", beta.Slug, err)
	}
	if len(apps) != len(beta.Apps) {
		t.Fatalf("Apps(%s): %d apps, want %d", beta.Slug, len(apps), len(beta.Apps))
	}
	for i, a := range apps {
		if a.ID != beta.Apps[i].ID {
			t.Errorf("Apps(%s)[%d] = %+v, want %s", beta.Slug, i, a, beta.Apps[i].ID)
		}
	}
}

func TestBuildsPagination(t *testing.T) {
	emu, c := startEmu(t)
	_, app := sampleApp(t, emu, "acme", "nightly")
	builds, err := c.Builds(ctxTimeout(t, 10*time.Second), "acme", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 130 || len(app.Builds) != 130 {
		t.Fatalf("got %d builds, want 130", len(builds))
	}
	if got := emu.Counters().APICalls["builds"]; got != 2 {
		t.Errorf("builds list calls = %d, want 2 pages", got)
	}
	seen := map[string]bool{}
	want := map[string]bool{}
	for _, b := range app.Builds {
		want[b.ID] = true
	}
	for i, b := range builds {
		if seen[b.ID] {
			t.Fatalf("build %s listed twice", b.ID)
		}
		seen[b.ID] = true
		if !want[b.ID] {
			t.Fatalf("build %s is not a nightly build", b.ID)
		}
		if i > 0 && !b.CreatedAt.Before(builds[i-1].CreatedAt) {
			t.Fatalf("builds not newest first at %d: %s then %s", i, builds[i-1].CreatedAt, b.CreatedAt)
		}
		if b.CreatedAt.IsZero() || b.Status != api.StatusProcessed || !b.Size.Valid || b.Size.Value <= 0 {
			t.Fatalf("build %d decoded badly: %+v", i, b)
		}
	}
	// The sample's newest nightly is 1.0.130, the oldest 1.0.1.
	if builds[0].VersionName != "1.0.130" || builds[129].VersionName != "1.0.1" {
		t.Errorf("first/last = %s/%s, want 1.0.130/1.0.1", builds[0].VersionName, builds[129].VersionName)
	}
}

func TestBuildsSmallAppAndErrors(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	builds, err := c.Builds(ctx, "acme", "field-app")
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 4 {
		t.Fatalf("got %d field-app builds, want 4", len(builds))
	}
	if builds[0].Status != api.StatusPending || builds[1].Status != api.StatusError {
		t.Errorf("statuses = %s, %s; want pending, error first", builds[0].Status, builds[1].Status)
	}
	if got := emu.Counters().APICalls["builds"]; got != 1 {
		t.Errorf("builds list calls = %d, want 1", got)
	}
	if _, err := c.Builds(ctx, "acme", "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Builds(acme/nope) = %v, want ErrNotFound", err)
	}
}

func TestBuild(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	want := sampleBuild(t, emu, "field-app", "2.4.0")
	b, err := c.Build(ctx, "acme", "field-app", want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != want.ID || b.Status != api.StatusProcessed || b.OS != "android" || b.BuildPlatform != "android" ||
		b.VersionName != "2.4.0" || string(b.VersionCode) != "240" || b.OriginalExtension != "aab" ||
		b.Changelog != "Fixes login crash" || len(b.Tags) != 2 {
		t.Errorf("build = %+v", b)
	}
	if !b.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("createdAt = %s, want %s", b.CreatedAt, want.CreatedAt)
	}
	if b.UpdatedAt.Before(b.CreatedAt) {
		t.Errorf("updatedAt %s before createdAt %s", b.UpdatedAt, b.CreatedAt)
	}
	if b.Info.PackageName() != "com.acme.field" || b.Info.MinOS() != "24" {
		t.Errorf("info: package %q minOS %q", b.Info.PackageName(), b.Info.MinOS())
	}
	if b.UploadedBy.String() == "" {
		t.Errorf("uploadedBy decoded empty: %+v", b.UploadedBy)
	}
	apk := emuObject(t, emu, want.ID, "file")
	if !b.Size.Valid || b.Size.Value != int64(len(apk)) {
		t.Errorf("size = %+v, want %d", b.Size, len(apk))
	}
	// Uppercase build ids are accepted by the API.
	if b2, err := c.Build(ctx, "acme", "field-app", strings.ToUpper(want.ID)); err != nil || b2.ID != want.ID {
		t.Errorf("Build(upper id) = %v, %v", b2, err)
	}
	// A build under another app is not found.
	if _, err := c.Build(ctx, "acme", "nightly", want.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Build under the wrong app = %v, want ErrNotFound", err)
	}
	if _, err := c.Build(ctx, "acme", "field-app", "000000000000000000000000"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown build = %v, want ErrNotFound", err)
	}
	// A malformed id is a 400: an *Error, but none of the classifiers.
	_, err = c.Build(ctx, "acme", "field-app", "not-an-id")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrServerError) {
		t.Errorf("malformed id = %v, want HTTP 400 *api.Error", err)
	}
}

// Every processed sample build's artifacts must match what storage serves.
func TestArtifactsMatchEmulator(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 15*time.Second)
	checked := 0
	for _, org := range emu.Data().Orgs {
		for _, app := range org.Apps {
			builds, err := c.Builds(ctx, org.Slug, app.Slug)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range builds {
				arts := b.Artifacts()
				if b.Status != api.StatusProcessed {
					if arts != nil {
						t.Errorf("%s/%s %s (%s) has artifacts %v", org.Slug, app.Slug, b.ID, b.Status, arts)
					}
					continue
				}
				if len(arts) == 0 {
					t.Errorf("%s/%s %s has no artifacts", org.Slug, app.Slug, b.ID)
				}
				for _, a := range arts {
					data, ok := emu.Object(b.ID, string(a.Type))
					if !ok {
						t.Errorf("%s/%s %s: artifact %s has no object", org.Slug, app.Slug, b.ID, a.Type)
						continue
					}
					if a.Size >= 0 && a.Size != int64(len(data)) {
						t.Errorf("%s/%s %s: artifact %s size %d, storage has %d", org.Slug, app.Slug, b.ID, a.Type, a.Size, len(data))
					}
					if a.Size < 0 && !(a.Type == api.Auto && a.Ext == "plist") {
						t.Errorf("%s/%s %s: artifact %+v has no size", org.Slug, app.Slug, b.ID, a)
					}
					checked++
				}
			}
		}
	}
	if checked < 130 {
		t.Errorf("only %d artifacts checked", checked)
	}
}

func TestMintToken(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	aab := sampleBuild(t, emu, "field-app", "2.4.0")
	for _, typ := range []api.DownloadType{api.Auto, api.File, api.AAB} {
		before := time.Now()
		tok, err := c.MintToken(ctx, "acme", "field-app", aab.ID, typ)
		if err != nil {
			t.Fatalf("MintToken(%s): %v", typ, err)
		}
		if tok.ExpiresAt.Before(before) || tok.ExpiresAt.After(before.Add(10*time.Minute)) {
			t.Errorf("MintToken(%s) expiresAt %s, minted at %s", typ, tok.ExpiresAt, before)
		}
		if s := fmt.Sprint(tok); s != "(download token)" {
			t.Errorf("token prints as %q", s)
		}
		if s := fmt.Sprintf("%v %+v", tok, tok); strings.Contains(s, "value") && !strings.Contains(s, "(download token)") {
			t.Errorf("token formatting leaks: %s", s)
		}
		loc, err := c.ResolveToken(ctx, tok)
		if err != nil {
			t.Fatalf("ResolveToken(%s): %v", typ, err)
		}
		if !strings.Contains(loc.Path, "/"+string(typ)+"/") {
			t.Errorf("%s token resolves to %s", typ, loc.Path)
		}
	}
	if got := emu.Counters().TokensMinted; got != 3 {
		t.Errorf("TokensMinted = %d, want 3", got)
	}
	// Apple builds mint auto (manifest) and file.
	ios := sampleBuild(t, emu, "field-ios", "3.1.0")
	for _, typ := range []api.DownloadType{api.Auto, api.File} {
		if _, err := c.MintToken(ctx, "acme", "field-ios", ios.ID, typ); err != nil {
			t.Errorf("MintToken(ios %s): %v", typ, err)
		}
	}
}

func TestMintTokenErrors(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	pending := sampleBuild(t, emu, "field-app", "2.5.0")
	failed := sampleBuild(t, emu, "field-app", "2.4.1")
	apk := sampleBuild(t, emu, "field-app", "2.3.0")
	inProgress := sampleBuild(t, emu, "field-ios", "3.2.0")

	_, err := c.MintToken(ctx, "acme", "field-app", pending.ID, api.Auto)
	if !errors.Is(err, api.ErrNotProcessed) {
		t.Fatalf("mint on pending build = %v, want ErrNotProcessed", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeNotProcessed || ae.StatusCode != 400 {
		t.Errorf("pending: %#v, want 400/5014", ae)
	}
	if errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrUnauthorized) || errors.Is(err, api.ErrServerError) {
		t.Errorf("pending: other classifiers match %v", err)
	}
	if _, err := c.MintToken(ctx, "acme", "field-app", failed.ID, api.File); !errors.Is(err, api.ErrNotProcessed) {
		t.Errorf("mint on error build = %v, want ErrNotProcessed", err)
	}
	if _, err := c.MintToken(ctx, "acme", "field-ios", inProgress.ID, api.File); !errors.Is(err, api.ErrNotProcessed) {
		t.Errorf("mint on in_progress build = %v, want ErrNotProcessed", err)
	}
	if _, err := c.MintToken(ctx, "acme", "field-app", apk.ID, api.AAB); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("aab of an apk build = %v, want ErrNotFound", err)
	}
	if _, err := c.MintToken(ctx, "acme", "nightly", apk.ID, api.File); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("mint under the wrong app = %v, want ErrNotFound", err)
	}
	_, err = c.MintToken(ctx, "acme", "field-app", apk.ID, api.DownloadType("zip"))
	if !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Errorf("bad type = %v, want HTTP 400", err)
	}
	if got := emu.Counters().TokensMinted; got != 0 {
		t.Errorf("TokensMinted = %d after failures only", got)
	}
}

func TestResolveToken(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := sampleBuild(t, emu, "field-app", "2.4.0")
	tok, err := c.MintToken(ctx, "acme", "field-app", b.ID, api.AAB)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := c.ResolveToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := url.Parse(emu.StorageURL())
	if loc.Host != st.Host || loc.Scheme != "http" {
		t.Fatalf("location %s is not on the storage host %s", loc.Redacted(), st.Host)
	}
	if loc.Query().Get("sig") == "" || loc.Query().Get("expires") == "" {
		t.Errorf("location lacks its signature: %s", loc.Redacted())
	}
	cnt := emu.Counters()
	if cnt.Redirects != 1 || cnt.StorageRequests != 0 {
		t.Errorf("redirects %d, storage requests %d: want 1, 0 (the redirect must not be followed)", cnt.Redirects, cnt.StorageRequests)
	}
	// The location serves the object.
	resp, err := http.Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != string(emuObject(t, emu, b.ID, "aab")) {
		t.Errorf("GET location: %d, %d bytes", resp.StatusCode, len(body))
	}

	// Single use.
	_, err = c.ResolveToken(ctx, tok)
	if !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("second resolve = %v, want ErrNotFound", err)
	}
	if errors.Is(err, api.ErrTokenExpired) {
		t.Errorf("second resolve also says expired: %v", err)
	}
	// A token never minted.
	if _, err := c.ResolveToken(ctx, api.DownloadToken{}); err == nil {
		t.Error("resolving the zero token succeeded")
	}
}

func TestResolveTokenExpired(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := sampleBuild(t, emu, "field-app", "2.3.0")
	emu.SetTokenTTL(time.Millisecond)
	tok, err := c.MintToken(ctx, "acme", "field-app", b.ID, api.File)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	_, err = c.ResolveToken(ctx, tok)
	if !errors.Is(err, api.ErrTokenExpired) {
		t.Fatalf("expired token = %v, want ErrTokenExpired", err)
	}
	if errors.Is(err, api.ErrUnauthorized) || errors.Is(err, api.ErrNotFound) {
		t.Errorf("expired token also classified unauthorized/not found: %v", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeTokenExpired || ae.StatusCode != 401 {
		t.Errorf("expired token: %#v, want 401/4005", ae)
	}
	// TTL <= 0 mints already expired tokens.
	emu.SetTokenTTL(0)
	tok, err = c.MintToken(ctx, "acme", "field-app", b.ID, api.File)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveToken(ctx, tok); !errors.Is(err, api.ErrTokenExpired) {
		t.Errorf("TTL 0 token = %v, want ErrTokenExpired", err)
	}
}

// ---------------------------------------------------------------------------
// Error classification.

func TestUnauthorizedWrongToken(t *testing.T) {
	emu, _ := startEmu(t)
	c := newClient(t, emu.APIURL(), emu.DownloadURL(), "wrong-token")
	ctx := ctxTimeout(t, 10*time.Second)
	_, err := c.Organizations(ctx)
	if !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("wrong token = %v, want ErrUnauthorized", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Code != api.CodeTokenNotValid {
		t.Errorf("wrong token: %#v, want 401/2001", ae)
	}
	if errors.Is(err, api.ErrForbidden) || errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrTokenExpired) || api.Temporary(err) {
		t.Errorf("wrong token: other classifiers match")
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("error message carries the token: %v", err)
	}
	for _, f := range []func() error{
		func() error { _, err := c.Apps(ctx, "acme"); return err },
		func() error { _, err := c.Builds(ctx, "acme", "desk"); return err },
		func() error { _, err := c.Build(ctx, "acme", "desk", "000000000000000000000000"); return err },
		func() error {
			_, err := c.MintToken(ctx, "acme", "desk", "000000000000000000000000", api.File)
			return err
		},
	} {
		if err := f(); !errors.Is(err, api.ErrUnauthorized) {
			t.Errorf("wrong token: %v, want ErrUnauthorized", err)
		}
	}
}

type classes struct {
	notFound, unauthorized, forbidden, notProcessed, expired, throttled, server, temporary bool
}

func classify(err error) classes {
	return classes{
		notFound:     errors.Is(err, api.ErrNotFound),
		unauthorized: errors.Is(err, api.ErrUnauthorized),
		forbidden:    errors.Is(err, api.ErrForbidden),
		notProcessed: errors.Is(err, api.ErrNotProcessed),
		expired:      errors.Is(err, api.ErrTokenExpired),
		throttled:    errors.Is(err, api.ErrThrottled),
		server:       errors.Is(err, api.ErrServerError),
		temporary:    api.Temporary(err),
	}
}

func TestErrorClassifiersHTTP(t *testing.T) {
	html502 := "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx/1.25.3</center>\n" +
		strings.Repeat("<!-- a padding comment to make the page long -->\n", 20) + "</body>\n</html>\n"
	htmlCT := http.Header{"Content-Type": {"text/html"}}
	cases := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		want       classes
		statusCode int
		code       int
		msg        string // substring of the error's Message
		retryAfter time.Duration
	}{
		{name: "missing token 4002", status: 401, body: `{"status":false,"error":{"code":4002,"message":"No auth token"}}`,
			want: classes{unauthorized: true}, statusCode: 401, code: 4002, msg: "No auth token"},
		{name: "invalid token 2001", status: 401, body: `{"status":false,"error":{"code":2001,"message":"Token not valid"}}`,
			want: classes{unauthorized: true}, statusCode: 401, code: 2001},
		{name: "401 without envelope", status: 401, body: `Unauthorized`,
			want: classes{unauthorized: true}, statusCode: 401, msg: `"Unauthorized"`},
		{name: "4002 on a 400", status: 400, body: `{"status":false,"error":{"code":4002,"message":"No auth token"}}`,
			want: classes{unauthorized: true}, statusCode: 400, code: 4002},
		{name: "forbidden 403", status: 403, body: `{"status":false,"error":{"code":4003,"message":"Forbidden"}}`,
			want: classes{forbidden: true}, statusCode: 403, code: 4003},
		{name: "forbidden 403 html", status: 403, header: htmlCT, body: `<h1>Forbidden</h1>`,
			want: classes{forbidden: true}, statusCode: 403, msg: "Forbidden"},
		{name: "not found 404/3001", status: 404, body: `{"status":false,"error":{"code":3001,"message":"Entity not found"}}`,
			want: classes{notFound: true}, statusCode: 404, code: 3001},
		{name: "3001 code as string", status: 404, body: `{"status":false,"error":{"code":"3001","message":"Entity not found"}}`,
			want: classes{notFound: true}, statusCode: 404, code: 3001},
		{name: "404 html", status: 404, header: htmlCT, body: `<html>Not Found</html>`,
			want: classes{notFound: true}, statusCode: 404},
		{name: "not processed 5014", status: 400, body: `{"status":false,"error":{"code":5014,"message":"Build Not Processed"}}`,
			want: classes{notProcessed: true}, statusCode: 400, code: 5014},
		{name: "token expired 4005", status: 401, body: `{"status":false,"error":{"code":4005,"message":"Token Expired"}}`,
			want: classes{expired: true}, statusCode: 401, code: 4005},
		{name: "throttled seconds", status: 429, header: http.Header{"Retry-After": {"7"}}, body: `{"status":false,"error":{"code":429,"message":"Too Many Requests"}}`,
			want: classes{throttled: true, temporary: true}, statusCode: 429, code: 429, retryAfter: 7 * time.Second},
		{name: "throttled no retry-after", status: 429, body: `slow down`,
			want: classes{throttled: true, temporary: true}, statusCode: 429},
		{name: "server 503", status: 503, body: `{"status":false,"error":{"code":503,"message":"Service Unavailable"}}`,
			want: classes{server: true, temporary: true}, statusCode: 503, code: 503},
		{name: "server 500 empty", status: 500, body: ``,
			want: classes{server: true, temporary: true}, statusCode: 500, msg: "(empty body)"},
		{name: "proxy 502 html", status: 502, header: htmlCT, body: html502,
			want: classes{server: true, temporary: true}, statusCode: 502, msg: `"<html> <head><title>502 Bad Gateway</title>`},
		{name: "200 status true with error", status: 200, body: `{"status":true,"error":{"code":3001,"message":"Entity not found"}}`,
			want: classes{notFound: true}, statusCode: 0, code: 3001, msg: "Entity not found"},
		{name: "200 status false no error", status: 200, body: `{"status":false}`,
			want: classes{}, statusCode: 0},
		{name: "200 status true error 5014", status: 200, body: `{"status":true,"error":{"code":5014,"message":"Build Not Processed"}}`,
			want: classes{notProcessed: true}, statusCode: 0, code: 5014},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := envelopeServer(t, tc.status, tc.header, tc.body)
			c := newClient(t, srv.URL, srv.URL, "tok")
			// A deadline shorter than any Retry-After here: a client that
			// retries API calls gives the last answer back at once.
			_, err := c.Organizations(ctxTimeout(t, 3*time.Second))
			if err == nil {
				t.Fatal("no error")
			}
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("%v (%T) is not an *api.Error", err, err)
			}
			if got := classify(err); got != tc.want {
				t.Errorf("classes = %+v, want %+v (err %v)", got, tc.want, err)
			}
			if ae.StatusCode != tc.statusCode || ae.Code != tc.code {
				t.Errorf("status %d code %d, want %d %d", ae.StatusCode, ae.Code, tc.statusCode, tc.code)
			}
			if tc.msg != "" && !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("message %q lacks %q", ae.Message, tc.msg)
			}
			if len(ae.Message) > 200 {
				t.Errorf("message is %d bytes long: the start of a body should be quoted, not all of it", len(ae.Message))
			}
			ra, ok := api.RetryAfter(err)
			if ra != tc.retryAfter || ok != (tc.retryAfter > 0) {
				t.Errorf("RetryAfter = %v %v, want %v", ra, ok, tc.retryAfter)
			}
			if ae.Op == "" || !strings.HasPrefix(err.Error(), ae.Op) {
				t.Errorf("error text %q does not start with the op", err)
			}
			// The same answer from the download host classifies the same way.
			_, rerr := c.ResolveToken(ctxTimeout(t, 10*time.Second), api.DownloadToken{})
			if tc.status >= 300 || strings.Contains(tc.body, `"error"`) || strings.Contains(tc.body, `"status":false`) {
				if got := classify(rerr); got != tc.want {
					t.Errorf("resolve: classes = %+v, want %+v (err %v)", got, tc.want, rerr)
				}
			}
		})
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	when := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	srv := envelopeServer(t, 429, http.Header{"Retry-After": {when}}, `{"status":false,"error":{"code":429,"message":"Too Many Requests"}}`)
	c := newClient(t, srv.URL, srv.URL, "tok")
	_, err := c.Organizations(ctxTimeout(t, 10*time.Second))
	ra, ok := api.RetryAfter(err)
	if !errors.Is(err, api.ErrThrottled) || !ok || ra < 80*time.Second || ra > 91*time.Second {
		t.Errorf("RetryAfter(http-date) = %v %v (err %v), want about 90s", ra, ok, err)
	}
}

func TestClassifiersOnOtherErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("boom"), io.EOF, fmt.Errorf("wrapped: %w", context.DeadlineExceeded)} {
		c := classify(err)
		c.temporary = false
		if c != (classes{}) {
			t.Errorf("classify(%v) = %+v", err, c)
		}
		if _, ok := api.RetryAfter(err); ok {
			t.Errorf("RetryAfter(%v) ok", err)
		}
	}
	// A wrapped *api.Error still classifies.
	wrapped := fmt.Errorf("outer: %w", &api.Error{Op: "x", StatusCode: 404})
	if !errors.Is(wrapped, api.ErrNotFound) {
		t.Error("errors.Is(err, api.ErrNotFound) does not see through wrapping")
	}
	if api.Temporary(api.ErrSizeMismatch) || api.Temporary(fmt.Errorf("read: %w", api.ErrObjectChanged)) {
		t.Error("size mismatch / changed object classified temporary")
	}
	if !api.Temporary(fmt.Errorf("read tcp: %w", syscall.ECONNRESET)) || !api.Temporary(io.ErrUnexpectedEOF) {
		t.Error("a transport failure is not temporary")
	}
	if api.Temporary(errors.New("answer has no data")) {
		t.Error("an answer that cannot be understood is temporary")
	}
	e := &api.Error{Op: "get app a/b", StatusCode: 404, Code: 3001, Message: "Entity not found"}
	if got := e.Error(); got != "get app a/b: HTTP 404, Applivery code 3001: Entity not found" {
		t.Errorf("Error() = %q", got)
	}
	e = &api.Error{Op: "op", Code: 5014, Message: "m"}
	if got := e.Error(); got != "op: failure envelope, Applivery code 5014: m" {
		t.Errorf("Error() = %q", got)
	}
}

// The comment on Temporary says a failure is worth retrying "unless the
// caller itself gave up".
func TestTemporaryCallerGaveUp(t *testing.T) {
	for _, err := range []error{context.Canceled, fmt.Errorf("get: %w", context.DeadlineExceeded)} {
		if api.Temporary(err) {
			t.Fatal("api.Temporary reports a cancelled/expired context as temporary (errors.go Temporary: only errPermanent is excluded), contrary to its comment \"unless the caller itself gave up\"")
		}
	}
}

// The faults stay on for every request, so the outcome is the same whether
// or not the client retries API calls itself.
func TestThrottledByEmulator(t *testing.T) {
	emu, c := startEmu(t)
	emu.SetFaults(emulator.Faults{APIStatus: 429, APIRetryAfter: 2 * time.Second})
	// A deadline shorter than Retry-After: a retrying client gives up at once.
	ctx := ctxTimeout(t, 1500*time.Millisecond)
	start := time.Now()
	_, err := c.Organizations(ctx)
	if !errors.Is(err, api.ErrThrottled) {
		t.Fatalf("got %v, want ErrThrottled", err)
	}
	if ra, ok := api.RetryAfter(err); !ok || ra != 2*time.Second {
		t.Errorf("RetryAfter = %v %v, want 2s", ra, ok)
	}
	if !api.Temporary(err) || errors.Is(err, api.ErrServerError) || errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("classes = %+v", classify(err))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s although Retry-After exceeds the deadline", d)
	}
	emu.SetFaults(emulator.Faults{})
	if _, err := c.Organizations(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Errorf("after the fault: %v", err)
	}
}

func TestServerErrorByEmulator(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := sampleBuild(t, emu, "desk", "1.8.0")
	emu.SetFaults(emulator.Faults{APIStatus: 503})
	_, err := c.Build(ctx, "acme", "desk", b.ID)
	if !errors.Is(err, api.ErrServerError) || !api.Temporary(err) || errors.Is(err, api.ErrThrottled) {
		t.Fatalf("got %v (%+v), want ErrServerError", err, classify(err))
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Errorf("error = %#v", ae)
	}
	if _, ok := api.RetryAfter(err); ok {
		t.Error("RetryAfter without a header")
	}
	_, err = c.MintToken(ctx, "acme", "desk", b.ID, api.File)
	if !errors.Is(err, api.ErrServerError) {
		t.Fatalf("mint: %v, want ErrServerError", err)
	}
	if n := emu.Counters().TokensMinted; n != 0 {
		t.Errorf("%d tokens minted", n)
	}
	emu.SetFaults(emulator.Faults{})
	if _, err := c.Build(ctx, "acme", "desk", b.ID); err != nil {
		t.Errorf("after the faults: %v", err)
	}
}

func TestAPIDownTransportError(t *testing.T) {
	emu, c := startEmu(t)
	emu.SetFaults(emulator.Faults{APIDown: true})
	_, err := c.Organizations(ctxTimeout(t, 10*time.Second))
	if err == nil {
		t.Fatal("no error from a down API")
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		t.Errorf("a dropped connection became an *api.Error: %v", err)
	}
	if !api.Temporary(err) {
		t.Errorf("a dropped connection is not temporary: %v", err)
	}
	if strings.Contains(err.Error(), emu.APIURL()+"/v1") {
		t.Errorf("transport error keeps the full URL: %v", err)
	}
}

func TestNonEnvelopeSuccessBodies(t *testing.T) {
	cases := []struct{ name, ct, body string }{
		{"html 200", "text/html", "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"},
		{"empty 200", "application/json", ""},
		{"json array", "application/json", `[1,2,3]`},
		{"truncated json", "application/json", `{"status":true,"data":{"items":[`},
		{"no data", "application/json", `{"status":true}`},
		{"null data", "application/json", `{"status":true,"data":null}`},
		{"data of the wrong shape", "application/json", `{"status":true,"data":{"items":"nope"}}`},
	}
	var retried []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			requests := 0
			srv := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				requests++
				mu.Unlock()
				w.Header().Set("Content-Type", tc.ct)
				io.WriteString(w, tc.body)
			}))
			c := newClient(t, srv.URL, srv.URL, "tok")
			orgs, err := c.Organizations(ctxTimeout(t, 10*time.Second))
			if err == nil {
				t.Fatalf("no error, got %v", orgs)
			}
			if tc.name == "html 200" && !strings.Contains(err.Error(), "Welcome to nginx") {
				t.Errorf("error %q does not quote the body", err)
			}
			if c := classify(err); c.notFound || c.unauthorized || c.server || c.throttled {
				t.Errorf("classified as %+v: %v", c, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if api.Temporary(err) || requests != 1 {
				retried = append(retried, fmt.Sprintf("%s (Temporary=%v, %d requests)", tc.name, api.Temporary(err), requests))
			}
		})
	}
	if len(retried) > 0 {
		t.Fatalf("errors.go Temporary returns true for every error that is not an *api.Error, including a 2xx answer that does not decode (client.go decodeEnvelope/getJSON return plain fmt.Errorf), although its comment limits that to failures that are \"not an answer from the host\"; with getJSON now retrying Temporary errors, deterministic decode failures are retried: %s", strings.Join(retried, "; "))
	}
}

// ---------------------------------------------------------------------------
// Loose decoding.

// A build list answered by hand: every shape the docs show.
const looseBuilds = `{
  "status": true,
  "data": {
    "items": [
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa1", "status": "processed", "os": "android", "buildPlatform": "android",
        "versionName": "2.4.0", "versionCode": 240, "originalExtension": "aab",
        "size": "48213577",
        "somethingNew": {"nested": [1, 2, {"x": null}]}, "processLogs": [], "hasEmmJson": false,
        "uploadedBy": {"id": "5e0", "email": "ci@example.com", "firstName": "CI"},
        "deployer": {"name": "Jenkins", "info": {"branch": "develop"}},
        "info": {"icon": "", "android": {"packageName": "com.acme.field", "minSDKVersion": "24", "versionCode": "240", "targetSdkVersion": "34"}},
        "files": [
          {"id": "f1", "type": "package", "file": {"originalName": "app-release-universal.apk", "size": 48213577, "checksum": "b531", "location": "https://x"}},
          {"id": "f2", "type": "original", "file": {"originalName": "app-release.aab", "size": "39000123", "checksum": "c0ff"}},
          {"id": "f3", "type": "icon", "file": {"originalName": "icon.png", "size": 812}}
        ],
        "createdAt": "2024-11-11T11:27:35.446Z", "updatedAt": "2024-11-11T11:29:02.101Z"
      },
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa2", "status": "processed", "os": "android", "buildPlatform": "android",
        "versionName": "2.3.0", "versionCode": "231", "originalExtension": ".apk",
        "size": 1634567, "uploadedBy": "dev@example.com", "tags": ["qa"],
        "files": [{"id": "f4", "type": "package", "file": {"originalName": "app-release.apk", "size": 1634567}}],
        "createdAt": "2024-10-01T08:00:00.000Z"
      },
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa3", "status": "processed", "os": "ios", "buildPlatform": "iOS",
        "versionName": "3.1.0", "versionCode": "310", "originalExtension": "ipa", "size": 0, "uploadedBy": "5e0f00",
        "info": {"ios": {"plist": {"CFBundleIdentifier": "com.acme.FieldApp", "MinimumOSVersion": "15.0", "UIDeviceFamily": [1, 2]}, "mobileprovision": {"ProvisionsAllDevices": false}}},
        "files": [{"id": "f5", "type": "package", "file": {"originalName": "FieldApp.ipa", "size": 3146962}}],
        "createdAt": "2024-09-01T08:00:00Z"
      },
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa4", "status": "processed", "os": "macos", "buildPlatform": "macOS",
        "versionName": "1.8.0", "versionCode": 180, "originalExtension": "pkg", "size": null, "uploadedBy": null,
        "info": {"macos": {"plist": {"CFBundleIdentifier": "com.acme.Desk", "MinimumOSVersion": "12.0"}}},
        "files": [{"id": "f6", "type": "package", "file": {"originalName": "Desk-1.8.0.pkg", "size": 1000003}}]
      },
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa5", "status": "pending", "os": "android", "buildPlatform": "android",
        "versionName": "2.5.0", "originalExtension": "aab", "files": [], "size": 0
      },
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa6", "status": "processed", "os": "windows", "buildPlatform": "windows",
        "versionName": "5.0", "size": 1.2e6, "originalExtension": "msi", "files": null
      },
      {
        "id": "aaaaaaaaaaaaaaaaaaaaaaa7", "status": "processed", "os": "android", "buildPlatform": "android",
        "versionName": "2.2.0", "size": 777,
        "files": [{"id": "f7", "type": "original", "file": {"originalName": "bundle.AAB"}}]
      }
    ],
    "totalDocs": 7, "limit": 100, "page": 1, "totalPages": 1, "pagingCounter": 1,
    "hasPrevPage": false, "hasNextPage": false, "prevPage": null, "nextPage": null, "extra": "ignored"
  },
  "meta": {"ignored": true}
}`

func looseServer(t *testing.T) *api.Client {
	t.Helper()
	srv := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/builds"):
			io.WriteString(w, looseBuilds)
		case strings.HasSuffix(r.URL.Path, "/apps"):
			io.WriteString(w, `{"status":true,"data":{"items":[{"id":"app1","name":"A","slug":"a","oss":["ios"],"sdk":{"ios":{"ota":true}},"counts":{},"unknown":[{}]}],"hasNextPage":false}}`)
		case strings.HasSuffix(r.URL.Path, "/organizations"):
			io.WriteString(w, `{"status":true,"data":{"items":[{"id":"o1","name":"O","slug":"o","picture":null,"billing":{"plan":"x"}}],"hasNextPage":false}}`)
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"status":false,"error":{"code":3001,"message":"Entity not found"}}`)
		}
	}))
	return newClient(t, srv.URL, srv.URL, "tok")
}

func TestLooseDecoding(t *testing.T) {
	c := looseServer(t)
	ctx := ctxTimeout(t, 10*time.Second)
	builds, err := c.Builds(ctx, "o", "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 7 {
		t.Fatalf("%d builds, want 7", len(builds))
	}
	aab, apk, ios, mac, pending, win := &builds[0], &builds[1], &builds[2], &builds[3], &builds[4], &builds[5]

	// size as a string and as a number; null; a float.
	if !aab.Size.Valid || aab.Size.Value != 48213577 {
		t.Errorf("string size = %+v", aab.Size)
	}
	if !apk.Size.Valid || apk.Size.Value != 1634567 {
		t.Errorf("number size = %+v", apk.Size)
	}
	if mac.Size.Valid {
		t.Errorf("null size = %+v, want invalid", mac.Size)
	}
	if !win.Size.Valid || win.Size.Value != 1200000 {
		t.Errorf("float size = %+v", win.Size)
	}
	// versionCode as a number and as a string.
	if aab.VersionCode != "240" || apk.VersionCode != "231" || mac.VersionCode != "180" || pending.VersionCode != "" {
		t.Errorf("versionCodes = %q %q %q %q", aab.VersionCode, apk.VersionCode, mac.VersionCode, pending.VersionCode)
	}
	// uploadedBy as an object, an email string, an id string and null.
	if aab.UploadedBy.Email != "ci@example.com" || aab.UploadedBy.ID != "5e0" || aab.UploadedBy.String() != "ci@example.com" {
		t.Errorf("object uploader = %+v", aab.UploadedBy)
	}
	if apk.UploadedBy.Email != "dev@example.com" || apk.UploadedBy.String() != "dev@example.com" {
		t.Errorf("email uploader = %+v", apk.UploadedBy)
	}
	if ios.UploadedBy.String() != "5e0f00" {
		t.Errorf("string uploader = %+v", ios.UploadedBy)
	}
	if mac.UploadedBy != (api.Uploader{}) {
		t.Errorf("null uploader = %+v", mac.UploadedBy)
	}
	// Times.
	if want := time.Date(2024, 11, 11, 11, 27, 35, 446e6, time.UTC); !aab.CreatedAt.Equal(want) {
		t.Errorf("createdAt = %s", aab.CreatedAt)
	}
	if !mac.CreatedAt.IsZero() {
		t.Errorf("absent createdAt = %s", mac.CreatedAt)
	}
	// Info.
	if aab.Info.PackageName() != "com.acme.field" || aab.Info.MinOS() != "24" {
		t.Errorf("android info: %q %q", aab.Info.PackageName(), aab.Info.MinOS())
	}
	if ios.Info.PackageName() != "com.acme.FieldApp" || ios.Info.MinOS() != "15.0" {
		t.Errorf("ios info: %q %q", ios.Info.PackageName(), ios.Info.MinOS())
	}
	if mac.Info.PackageName() != "com.acme.Desk" || mac.Info.MinOS() != "12.0" {
		t.Errorf("macos info: %q %q", mac.Info.PackageName(), mac.Info.MinOS())
	}
	if win.Info.PackageName() != "" || win.Info.MinOS() != "" {
		t.Error("windows info not empty")
	}
	if len(aab.Files) != 3 || aab.Files[1].File.Size.Value != 39000123 || aab.Files[0].File.Checksum != "b531" {
		t.Errorf("files = %+v", aab.Files)
	}
	if len(apk.Tags) != 1 || apk.Tags[0] != "qa" {
		t.Errorf("tags = %v", apk.Tags)
	}

	// Unknown fields in apps and organizations are ignored too.
	apps, err := c.Apps(ctx, "o")
	if err != nil || len(apps) != 1 || apps[0].Slug != "a" || len(apps[0].OSs) != 1 {
		t.Errorf("Apps = %+v, %v", apps, err)
	}
	orgs, err := c.Organizations(ctx)
	if err != nil || len(orgs) != 1 || orgs[0].Slug != "o" {
		t.Errorf("Organizations = %+v, %v", orgs, err)
	}
}

func TestArtifacts(t *testing.T) {
	c := looseServer(t)
	builds, err := c.Builds(ctxTimeout(t, 10*time.Second), "o", "a")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]api.Artifact{
		// Android uploaded as .aab: universal apk twice, the bundle from files[original].
		{{Type: api.Auto, Ext: "apk", Size: 48213577, Checksum: "b531"}, {Type: api.File, Ext: "apk", Size: 48213577, Checksum: "b531"}, {Type: api.AAB, Ext: "aab", Size: 39000123, Checksum: "c0ff"}},
		// Android .apk: no aab.
		{{Type: api.Auto, Ext: "apk", Size: 1634567}, {Type: api.File, Ext: "apk", Size: 1634567}},
		// iOS: the OTA manifest has no size.
		{{Type: api.Auto, Ext: "plist", Size: -1}, {Type: api.File, Ext: "ipa", Size: 3146962}},
		// macOS: a .pkg.
		{{Type: api.Auto, Ext: "plist", Size: -1}, {Type: api.File, Ext: "pkg", Size: 1000003}},
		// pending: nothing.
		nil,
		// Another platform: the original extension, size from the top level.
		{{Type: api.File, Ext: "msi", Size: 1200000}},
		// .aab known only from files[original].originalName; no size there.
		{{Type: api.Auto, Ext: "apk", Size: 777}, {Type: api.File, Ext: "apk", Size: 777}, {Type: api.AAB, Ext: "aab", Size: -1}},
	}
	for i, b := range builds {
		got := b.Artifacts()
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("build %d (%s %s): artifacts\n got %+v\nwant %+v", i, b.BuildPlatform, b.Status, got, want[i])
		}
	}
	// Error and in-progress builds offer nothing either.
	for _, st := range []string{api.StatusError, api.StatusInProgress} {
		b := builds[0]
		b.Status = st
		if a := b.Artifacts(); a != nil {
			t.Errorf("%s build artifacts = %v", st, a)
		}
	}
}

// The docs list info.android.* as strings, but versionCode is an integer in
// every Android manifest; a numeric one must not make the whole list fail.
func TestLooseDecodingNumericInfo(t *testing.T) {
	body := `{"status":true,"data":{"items":[{"id":"b1","status":"processed","os":"android","versionCode":7,
	  "info":{"android":{"packageName":"p","versionCode":7,"minSDKVersion":24}}}],"hasNextPage":false}}`
	srv := envelopeServer(t, 200, nil, body)
	c := newClient(t, srv.URL, srv.URL, "tok")
	builds, err := c.Builds(ctxTimeout(t, 10*time.Second), "o", "a")
	if err != nil {
		t.Fatalf("types.go BuildInfo.Android fields are plain strings, so a numeric info.android.versionCode/minSDKVersion fails the whole build list: %v", err)
	}
	if len(builds) != 1 || builds[0].Info.PackageName() != "p" || builds[0].Info.MinOS() != "24" {
		t.Errorf("builds = %+v", builds)
	}
}

func TestFlexValues(t *testing.T) {
	cases := []struct {
		in    string
		value int64
		valid bool
		bad   bool
	}{
		{`123`, 123, true, false},
		{`"123"`, 123, true, false},
		{`" 42 "`, 42, true, false},
		{`""`, 0, false, false},
		{`null`, 0, false, false},
		{`1.5e3`, 1500, true, false},
		{`"abc"`, 0, false, true},
		{`true`, 0, false, true},
		{`{}`, 0, false, true},
	}
	for _, tc := range cases {
		var f api.FlexInt
		err := f.UnmarshalJSON([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("FlexInt(%s) accepted: %+v", tc.in, f)
			}
			continue
		}
		if err != nil || f.Value != tc.value || f.Valid != tc.valid {
			t.Errorf("FlexInt(%s) = %+v, %v", tc.in, f, err)
		}
	}
	if b, _ := (api.FlexInt{Value: 5, Valid: true}).MarshalJSON(); string(b) != "5" {
		t.Errorf("marshal = %s", b)
	}
	if b, _ := (api.FlexInt{}).MarshalJSON(); string(b) != "null" {
		t.Errorf("marshal invalid = %s", b)
	}
	for in, want := range map[string]string{`"a"`: "a", `12`: "12", `null`: "", `"12"`: "12"} {
		var s api.FlexString
		if err := s.UnmarshalJSON([]byte(in)); err != nil || string(s) != want {
			t.Errorf("FlexString(%s) = %q, %v", in, s, err)
		}
	}
}

// ---------------------------------------------------------------------------
// Redirect handling of ResolveToken.

func TestResolveTokenAnswers(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		location string
		body     string
		wantURL  string // "" = want an error
	}{
		{"302 absolute", 302, "https://storage.example/o/1?sig=x", "", "https://storage.example/o/1?sig=x"},
		{"301", 301, "https://storage.example/a", "", "https://storage.example/a"},
		{"307", 307, "https://storage.example/b", "", "https://storage.example/b"},
		{"relative", 302, "/blob/1?sig=y", "", "{self}/blob/1?sig=y"},
		{"no location", 302, "", "", ""},
		{"bad scheme", 302, "ftp://storage.example/x", "", ""},
		{"200 json", 200, "", `{"status":true,"data":{}}`, ""},
		{"200 html", 200, "", `<html>hi</html>`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.location != "" {
					w.Header().Set("Location", tc.location)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			c := newClient(t, srv.URL, srv.URL, "tok")
			loc, err := c.ResolveToken(ctxTimeout(t, 10*time.Second), api.DownloadToken{})
			want := strings.ReplaceAll(tc.wantURL, "{self}", srv.URL)
			switch {
			case want == "" && err == nil:
				t.Fatalf("no error, got %v", loc)
			case want != "" && err != nil:
				t.Fatal(err)
			case want != "" && loc.String() != want:
				t.Errorf("location = %s, want %s", loc, want)
			}
		})
	}
}

// Path segments are escaped once: the server must see the names the
// caller gave.
func TestPathEscaping(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		io.WriteString(w, `{"status":true,"data":{"id":"x","token":"t","items":[],"hasNextPage":false}}`)
	}))
	c := newClient(t, srv.URL+"/base", srv.URL, "tok")
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := c.Apps(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Builds(ctx, "acme", "field-app"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Build(ctx, "my org", "a?b#c", "x"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"/base/v1/organizations/acme/apps",
		"/base/v1/organizations/acme/apps/field-app/builds",
		"/base/v1/organizations/my org/apps/a?b#c/builds/x",
	}
	if len(paths) != len(want) {
		t.Fatalf("paths = %q", paths)
	}
	for i := 0; i < 2; i++ {
		if paths[i] != want[i] {
			t.Errorf("path %d = %q, want %q", i, paths[i], want[i])
		}
	}
	if paths[2] != want[2] {
		t.Fatalf("client.go getJSON sets url.URL.Path to already PathEscape'd segments, so they are escaped twice: Build(\"my org\", \"a?b#c\", \"x\") reached the server as %q, want %q", paths[2], want[2])
	}
}

// ---------------------------------------------------------------------------
// The bearer token stays on the API host.

type headerLog struct {
	mu   sync.Mutex
	auth []string
}

func (l *headerLog) add(r *http.Request) {
	l.mu.Lock()
	l.auth = append(l.auth, r.Header.Get("Authorization"))
	l.mu.Unlock()
}

func (l *headerLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.auth...)
}

// recordingProxy forwards to target, logging Authorization headers;
// rewrite, if set, edits the answer (the download host's Location).
func recordingProxy(t *testing.T, target string, log *headerLog, rewrite func(*http.Response) error) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &httputil.ReverseProxy{
		Rewrite:        func(r *httputil.ProxyRequest) { r.SetURL(u) },
		ModifyResponse: rewrite,
	}
	return localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		p.ServeHTTP(w, r)
	}))
}

func TestBearerTokenStaysOnAPIHostEmulator(t *testing.T) {
	emu, err := emulator.Start(emulator.Options{Addr: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	var apiLog, dlLog, stLog headerLog
	storage := recordingProxy(t, emu.StorageURL(), &stLog, nil)
	download := recordingProxy(t, emu.DownloadURL(), &dlLog, func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			resp.Header.Set("Location", strings.Replace(loc, emu.StorageURL(), storage.URL, 1))
		}
		return nil
	})
	apiHost := recordingProxy(t, emu.APIURL(), &apiLog, nil)
	c := newClient(t, apiHost.URL, download.URL, emu.Token())
	ctx := ctxTimeout(t, 15*time.Second)

	b := sampleBuild(t, emu, "field-app", "2.4.0")
	if _, err := c.Builds(ctx, "acme", "field-app"); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []api.DownloadType{api.File, api.AAB} {
		want := emuObject(t, emu, b.ID, string(typ))
		obj := c.Object("acme", "field-app", b.ID, typ, int64(len(want)))
		buf := make([]byte, 5000)
		if _, err := obj.ReadAt(ctx, buf, 1000); err != nil {
			t.Fatalf("ReadAt through the proxies: %v", err)
		}
		if string(buf) != string(want[1000:6000]) {
			t.Fatal("wrong bytes through the proxies")
		}
	}
	// Also the bare token flow, and a failed resolve.
	tok, err := c.MintToken(ctx, "acme", "field-app", b.ID, api.Auto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveToken(ctx, tok); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second resolve = %v", err)
	}

	checkAuthLogs(t, emu.Token(), apiLog.get(), dlLog.get(), stLog.get())
}

func TestBearerTokenStaysOnAPIHostRedirects(t *testing.T) {
	const token = "secret-service-account-token"
	var apiLog, dlLog, stLog headerLog
	payload := []byte(strings.Repeat("0123456789", 100))
	// The final storage host serves ranges of the payload.
	final := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stLog.add(r)
		http.ServeContent(w, r, "f.bin", time.Unix(0, 0), strings.NewReader(string(payload)))
	}))
	// The first storage host redirects to a regional one, as some stores do.
	first := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stLog.add(r)
		http.Redirect(w, r, final.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	download := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dlLog.add(r)
		http.Redirect(w, r, first.URL+"/o/1?sig=abc", http.StatusFound)
	}))
	apiHost := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiLog.add(r)
		io.WriteString(w, `{"status":true,"data":{"token":"dl-token","expiresAt":"2099-01-01T00:00:00.000Z"}}`)
	}))
	c := newClient(t, apiHost.URL, download.URL, token)
	obj := c.Object("o", "a", "b", api.File, int64(len(payload)))
	buf := make([]byte, 100)
	n, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), buf, 450)
	if err != nil || n != 100 || string(buf) != string(payload[450:550]) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	checkAuthLogs(t, token, apiLog.get(), dlLog.get(), stLog.get())
	if len(stLog.get()) < 2 {
		t.Errorf("storage requests = %d, want the redirect followed", len(stLog.get()))
	}
}

func checkAuthLogs(t *testing.T, token string, apiAuth, dlAuth, stAuth []string) {
	t.Helper()
	if len(apiAuth) == 0 || len(dlAuth) == 0 || len(stAuth) == 0 {
		t.Fatalf("requests seen: api %d, download %d, storage %d", len(apiAuth), len(dlAuth), len(stAuth))
	}
	for _, a := range apiAuth {
		if a != "Bearer "+token {
			t.Errorf("API host got Authorization %q", a)
		}
	}
	for _, a := range dlAuth {
		if a != "" {
			t.Errorf("download host got Authorization %q", a)
		}
	}
	for _, a := range stAuth {
		if a != "" {
			t.Errorf("storage got Authorization %q", a)
		}
	}
}

// ---------------------------------------------------------------------------
// Cancellation.

func TestCancelledBeforeRequest(t *testing.T) {
	emu, c := startEmu(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := sampleBuild(t, emu, "desk", "1.8.0")
	calls := []struct {
		name string
		f    func() error
	}{
		{"Organizations", func() error { _, err := c.Organizations(ctx); return err }},
		{"Apps", func() error { _, err := c.Apps(ctx, "acme"); return err }},
		{"Builds", func() error { _, err := c.Builds(ctx, "acme", "desk"); return err }},
		{"Build", func() error { _, err := c.Build(ctx, "acme", "desk", b.ID); return err }},
		{"MintToken", func() error { _, err := c.MintToken(ctx, "acme", "desk", b.ID, api.File); return err }},
		{"ResolveToken", func() error { _, err := c.ResolveToken(ctx, api.DownloadToken{}); return err }},
	}
	for _, call := range calls {
		start := time.Now()
		err := call.f()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", call.name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %s", call.name, d)
		}
	}
	if n := emu.Counters().APICalls; len(n) != 0 {
		t.Errorf("API calls with a cancelled context: %v", n)
	}
}

func TestCancelledMidFlight(t *testing.T) {
	emu, c := startEmu(t)
	emu.SetLatency(2 * time.Second)
	b := sampleBuild(t, emu, "desk", "1.8.0")
	calls := []struct {
		name string
		f    func(context.Context) error
	}{
		{"Builds", func(ctx context.Context) error { _, err := c.Builds(ctx, "acme", "desk"); return err }},
		{"MintToken", func(ctx context.Context) error {
			_, err := c.MintToken(ctx, "acme", "desk", b.ID, api.File)
			return err
		}},
		{"ResolveToken", func(ctx context.Context) error { _, err := c.ResolveToken(ctx, api.DownloadToken{}); return err }},
	}
	var wg sync.WaitGroup
	for _, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			err := call.f(ctx)
			d := time.Since(start)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s cancelled mid-flight = %v, want context.Canceled", call.name, err)
			}
			if d > time.Second {
				t.Errorf("%s returned %s after its start, want about 100ms", call.name, d)
			}
		}()
	}
	wg.Wait()
}

func TestDeadlineMidFlight(t *testing.T) {
	emu, c := startEmu(t)
	emu.SetLatency(2 * time.Second)
	ctx := ctxTimeout(t, 150*time.Millisecond)
	start := time.Now()
	_, err := c.Organizations(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}
