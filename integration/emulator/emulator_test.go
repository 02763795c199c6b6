package emulator

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// harness is a started emulator and a plain HTTP client that does not
// follow redirects, so tests see the 302s.
type harness struct {
	t      *testing.T
	srv    *Server
	client *http.Client
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return &harness{t: t, srv: srv, client: &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request and reads the whole body.
func (h *harness) do(method, rawURL string, header http.Header) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading body: %v", method, rawURL, err)
	}
	return resp, body
}

type testEnvelope struct {
	Status bool            `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type testPage struct {
	Items         []json.RawMessage `json:"items"`
	TotalDocs     int               `json:"totalDocs"`
	Limit         int               `json:"limit"`
	Page          int               `json:"page"`
	TotalPages    int               `json:"totalPages"`
	PagingCounter int               `json:"pagingCounter"`
	HasPrevPage   bool              `json:"hasPrevPage"`
	HasNextPage   bool              `json:"hasNextPage"`
	PrevPage      *int              `json:"prevPage"`
	NextPage      *int              `json:"nextPage"`
}

// api GETs an API path with the right token and decodes the envelope.
func (h *harness) api(path string) (int, testEnvelope) {
	h.t.Helper()
	return h.apiWith(path, http.Header{"Authorization": {"Bearer " + h.srv.Token()}})
}

func (h *harness) apiWith(path string, header http.Header) (int, testEnvelope) {
	h.t.Helper()
	resp, body := h.do(http.MethodGet, h.srv.APIURL()+path, header)
	var env testEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		h.t.Fatalf("GET %s: %v in %q", path, err, body)
	}
	if env.Status == (env.Error != nil) {
		h.t.Fatalf("GET %s: status %v with error %v", path, env.Status, env.Error)
	}
	return resp.StatusCode, env
}

// ok GETs an API path that must succeed and decodes its data into v.
func (h *harness) ok(path string, v any) {
	h.t.Helper()
	status, env := h.api(path)
	if status != http.StatusOK || !env.Status {
		h.t.Fatalf("GET %s: %d %+v", path, status, env.Error)
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
}

// fails GETs an API path that must fail with the given status and code.
func (h *harness) fails(path string, header http.Header, status, code int) {
	h.t.Helper()
	if header == nil {
		header = http.Header{"Authorization": {"Bearer " + h.srv.Token()}}
	}
	got, env := h.apiWith(path, header)
	if got != status || env.Error == nil || env.Error.Code != code {
		h.t.Fatalf("GET %s: got %d %+v, want %d code %d", path, got, env.Error, status, code)
	}
}

// build finds a sample build by app slug and version name.
func (h *harness) build(appSlug, versionName string) *Build {
	h.t.Helper()
	for _, o := range h.srv.Data().Orgs {
		for _, a := range o.Apps {
			for _, b := range a.Builds {
				if a.Slug == appSlug && b.VersionName == versionName {
					return b
				}
			}
		}
	}
	h.t.Fatalf("no build %s of %s", versionName, appSlug)
	return nil
}

func buildPath(org, app, id string) string {
	return "/v1/organizations/" + org + "/apps/" + app + "/builds/" + id
}

// token mints a download token.
func (h *harness) token(org, app, id, typ string) string {
	h.t.Helper()
	var tok struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expiresAt"`
	}
	h.ok(buildPath(org, app, id)+"/downloadToken?type="+typ, &tok)
	if tok.Token == "" {
		h.t.Fatal("empty token")
	}
	if _, err := time.Parse(isoMillis, tok.ExpiresAt); err != nil {
		h.t.Fatalf("expiresAt %q: %v", tok.ExpiresAt, err)
	}
	return tok.Token
}

// signedURL goes through the whole download flow for a build object.
func (h *harness) signedURL(org, app, id, typ string) string {
	h.t.Helper()
	resp, body := h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/"+h.token(org, app, id, typ), nil)
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("download: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, h.srv.StorageURL()+"/") {
		h.t.Fatalf("Location %q is not on the storage host", loc)
	}
	return loc
}

func TestOrganizationsAndApps(t *testing.T) {
	h := newHarness(t)
	var orgs testPage
	h.ok("/v1/organizations", &orgs)
	if orgs.TotalDocs != 2 || len(orgs.Items) != 2 || orgs.Page != 1 || orgs.Limit != 100 ||
		orgs.TotalPages != 1 || orgs.PagingCounter != 1 || orgs.HasPrevPage || orgs.HasNextPage ||
		orgs.PrevPage != nil || orgs.NextPage != nil {
		t.Fatalf("organizations page: %+v", orgs)
	}
	var org struct{ ID, Name, Slug string }
	json.Unmarshal(orgs.Items[0], &org)
	if org.Name != "Acme Mobile" || org.Slug != "acme" || !isObjectID(org.ID) {
		t.Fatalf("first org: %+v", org)
	}

	h.ok("/v1/organizations?slug=beta-labs", &orgs)
	if orgs.TotalDocs != 1 {
		t.Fatalf("slug filter: %d orgs", orgs.TotalDocs)
	}

	var apps testPage
	h.ok("/v1/organizations/acme/apps/", &apps) // trailing slash
	if apps.TotalDocs != 4 {
		t.Fatalf("acme has %d apps, want 4", apps.TotalDocs)
	}
	type appItem struct {
		ID, Name, Slug, Organization string
		OSs                          []string `json:"oss"`
		BuildPlatforms               []string
		LastBuildProcessedDate       *string
	}
	var byID, bySlug appItem
	h.ok("/v1/organizations/"+org.ID+"/apps/field-ios", &bySlug)
	h.ok("/v1/organizations/acme/apps/"+bySlug.ID, &byID)
	if byID.Slug != "field-ios" || byID.Organization != org.ID || fmt.Sprint(byID.OSs) != "[ios]" ||
		fmt.Sprint(byID.BuildPlatforms) != "[ios]" || byID.LastBuildProcessedDate == nil {
		t.Fatalf("app: %+v", byID)
	}
}

func TestAuthErrors(t *testing.T) {
	h := newHarness(t)
	h.fails("/v1/organizations", http.Header{}, http.StatusUnauthorized, 4002)
	h.fails("/v1/organizations", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized, 2001)
	h.fails("/v1/organizations", http.Header{"Authorization": {"Basic " + h.srv.Token()}}, http.StatusUnauthorized, 2001)
}

func TestNotFoundAndBadRequest(t *testing.T) {
	h := newHarness(t)
	other := h.build("field-ios", "3.1.0")
	h.fails("/v1/organizations/nope/apps", nil, http.StatusNotFound, 3001)
	h.fails("/v1/organizations/acme/apps/nope", nil, http.StatusNotFound, 3001)
	h.fails("/v1/organizations/beta-labs/apps/field-app", nil, http.StatusNotFound, 3001)
	h.fails(buildPath("acme", "field-app", other.ID), nil, http.StatusNotFound, 3001)
	h.fails(buildPath("acme", "field-app", other.ID)+"/downloadToken", nil, http.StatusNotFound, 3001)
	h.fails(buildPath("acme", "field-app", "not-an-id"), nil, http.StatusBadRequest, 400)
	h.fails("/v1/organizations/acme/unknown", nil, http.StatusNotFound, 3001)

	var b struct{ ID string }
	h.ok(buildPath("acme", "field-ios", strings.ToUpper(other.ID)), &b) // ids are case-insensitive
	if b.ID != other.ID {
		t.Fatalf("got build %s, want %s", b.ID, other.ID)
	}
}

func TestBuildPagination(t *testing.T) {
	h := newHarness(t)
	base := "/v1/organizations/acme/apps/nightly/builds"
	var p1, p2, p3 testPage
	h.ok(base, &p1)
	h.ok(base+"/?page=2", &p2)
	h.ok(base+"?page=3", &p3)
	if len(p1.Items) != 100 || p1.TotalDocs != 130 || p1.TotalPages != 2 || !p1.HasNextPage ||
		p1.NextPage == nil || *p1.NextPage != 2 || p1.PrevPage != nil || p1.HasPrevPage {
		t.Fatalf("page 1: %+v", p1)
	}
	if len(p2.Items) != 30 || p2.HasNextPage || p2.NextPage != nil || p2.PrevPage == nil ||
		*p2.PrevPage != 1 || p2.PagingCounter != 101 {
		t.Fatalf("page 2: %+v", p2)
	}
	if len(p3.Items) != 0 || p3.Items == nil || p3.HasNextPage || p3.NextPage != nil || p3.TotalDocs != 130 {
		t.Fatalf("page 3: %+v", p3)
	}

	// Newest first across both pages.
	var last time.Time
	for i, raw := range append(p1.Items, p2.Items...) {
		var b struct{ CreatedAt string }
		json.Unmarshal(raw, &b)
		at, err := time.Parse(isoMillis, b.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !at.Before(last) {
			t.Fatalf("item %d at %v is not older than %v", i, at, last)
		}
		last = at
	}

	var asc, clamped testPage
	h.ok(base+"?sort=createdAt:asc&limit=5", &asc)
	var first struct{ VersionName string }
	json.Unmarshal(asc.Items[0], &first)
	if len(asc.Items) != 5 || asc.TotalPages != 26 || first.VersionName != "1.0.1" {
		t.Fatalf("ascending: %d items, %d pages, first %s", len(asc.Items), asc.TotalPages, first.VersionName)
	}
	h.ok(base+"?limit=1000", &clamped)
	if clamped.Limit != 100 || len(clamped.Items) != 100 {
		t.Fatalf("limit=1000 gave limit %d, %d items", clamped.Limit, len(clamped.Items))
	}
}

func TestBuildListFilters(t *testing.T) {
	h := newHarness(t)
	var all, processed, named testPage
	h.ok("/v1/organizations/acme/apps/field-app/builds", &all)
	h.ok("/v1/organizations/acme/apps/field-app/builds?status=processed", &processed)
	h.ok("/v1/organizations/acme/apps/field-app/builds?versionName=2.3.0&os=android", &named)
	var newest struct{ Status string }
	json.Unmarshal(all.Items[0], &newest)
	if all.TotalDocs != 4 || newest.Status != "pending" {
		t.Fatalf("field-app: %d builds, newest %q", all.TotalDocs, newest.Status)
	}
	if processed.TotalDocs != 2 || named.TotalDocs != 1 {
		t.Fatalf("filters: %d processed, %d named", processed.TotalDocs, named.TotalDocs)
	}
}

// TestBuildObject checks the build JSON against the bytes storage serves.
func TestBuildObject(t *testing.T) {
	h := newHarness(t)
	aab := h.build("field-app", "2.4.0")
	type fileEntry struct {
		Type string
		File struct {
			OriginalName string
			Size         int64
			Checksum     string
		}
	}
	var b struct {
		ID                string
		Status            string
		OriginalExtension string
		ApplicationInfo   struct{ Slug string }
		Info              struct {
			Android struct{ PackageName, MinSDKVersion string }
		}
		Size      json.RawMessage
		Files     []fileEntry
		CreatedAt string
		UpdatedAt string
	}
	h.ok(buildPath("acme", "field-app", aab.ID), &b)
	if b.ID != aab.ID || b.Status != "processed" || b.OriginalExtension != "aab" ||
		b.ApplicationInfo.Slug != "field-app" || b.Info.Android.PackageName != "com.acme.field" ||
		b.Info.Android.MinSDKVersion != "24" {
		t.Fatalf("build: %+v", b)
	}
	want := map[string]string{"package": typeFile, "original": typeAAB}
	for _, f := range b.Files {
		typ, ok := want[f.Type]
		if !ok {
			continue
		}
		delete(want, f.Type)
		data, _ := h.srv.Object(aab.ID, typ)
		sum := sha256.Sum256(data)
		if f.File.Size != int64(len(data)) || f.File.Checksum != hex.EncodeToString(sum[:]) {
			t.Errorf("%s entry: size %d checksum %s; served %d bytes", f.Type, f.File.Size, f.File.Checksum, len(data))
		}
		if f.Type == "package" && string(b.Size) != strconv.Itoa(len(data)) {
			t.Errorf("size %s, package %d", b.Size, len(data))
		}
	}
	if len(want) != 0 {
		t.Errorf("files[] lacks %v", want)
	}
	if !strings.HasSuffix(b.CreatedAt, "Z") || len(b.CreatedAt) != len(isoMillis) || b.UpdatedAt <= b.CreatedAt {
		t.Errorf("createdAt %q updatedAt %q", b.CreatedAt, b.UpdatedAt)
	}
}

func TestSizeAndUploaderShapes(t *testing.T) {
	h := newHarness(t)
	var page testPage
	h.ok("/v1/organizations/acme/apps/nightly/builds", &page)
	var strSizes, numSizes, objUploaders, strUploaders int
	for _, raw := range page.Items {
		var b struct {
			VersionCode string
			Size        any
			UploadedBy  any
		}
		json.Unmarshal(raw, &b)
		code, _ := strconv.Atoi(b.VersionCode)
		switch size := b.Size.(type) {
		case string:
			strSizes++
			if code%2 == 0 {
				t.Errorf("versionCode %d: string size %q", code, size)
			}
		case float64:
			numSizes++
			if code%2 != 0 || size <= 0 {
				t.Errorf("versionCode %d: number size %v", code, size)
			}
		}
		switch b.UploadedBy.(type) {
		case string:
			strUploaders++
		case map[string]any:
			objUploaders++
		}
	}
	if strSizes == 0 || numSizes == 0 || strUploaders == 0 || objUploaders == 0 {
		t.Fatalf("sizes %d string / %d number; uploaders %d string / %d object",
			strSizes, numSizes, strUploaders, objUploaders)
	}
}

func TestDownloadFlow(t *testing.T) {
	h := newHarness(t)
	b := h.build("field-app", "2.4.0")
	h.srv.ResetCounters()

	for _, typ := range []string{"auto", "file", "aab"} {
		tok := h.token("acme", "field-app", b.ID, typ)
		// No Authorization header: the token is the credential.
		resp, body := h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/"+tok, nil)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("%s: %d %s", typ, resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		resp, data := h.do(http.MethodGet, loc, nil)
		want, _ := h.srv.Object(b.ID, typ)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(data, want) {
			t.Fatalf("%s: %d, %d bytes, want %d", typ, resp.StatusCode, len(data), len(want))
		}
		if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("ETag") == "" ||
			resp.Header.Get("Last-Modified") != b.CreatedAt.Format(http.TimeFormat) {
			t.Fatalf("%s: headers %v", typ, resp.Header)
		}
		if _, err := zip.NewReader(bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("%s is not a zip: %v", typ, err)
		}

		// Single use.
		resp, body = h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/"+tok, nil)
		var env testEnvelope
		json.Unmarshal(body, &env)
		if resp.StatusCode != http.StatusNotFound || env.Error == nil || env.Error.Code != 3001 {
			t.Fatalf("reused token: %d %s", resp.StatusCode, body)
		}
	}
	auto, _ := h.srv.Object(b.ID, "auto")
	file, _ := h.srv.Object(b.ID, "file")
	if &auto[0] != &file[0] {
		t.Error("auto and file are different objects on Android")
	}

	c := h.srv.Counters()
	if c.APICalls["downloadToken"] != 3 || c.TokensMinted != 3 || c.Redirects != 3 || c.StorageRequests != 3 {
		t.Fatalf("counters: %+v", c)
	}
	aab, _ := h.srv.Object(b.ID, "aab")
	if c.StorageBytes != int64(2*len(auto)+len(aab)) {
		t.Fatalf("StorageBytes %d, want %d", c.StorageBytes, 2*len(auto)+len(aab))
	}
	h.srv.ResetCounters()
	if c := h.srv.Counters(); len(c.APICalls) != 0 || c.StorageBytes != 0 || c.Redirects != 0 {
		t.Fatalf("after reset: %+v", c)
	}
}

func TestDownloadTokenErrors(t *testing.T) {
	h := newHarness(t)
	pending := h.build("field-app", "2.5.0")
	failed := h.build("field-app", "2.4.1")
	apkOnly := h.build("field-app", "2.3.0")
	h.fails(buildPath("acme", "field-app", pending.ID)+"/downloadToken?type=auto", nil, http.StatusBadRequest, 5014)
	h.fails(buildPath("acme", "field-app", failed.ID)+"/downloadToken", nil, http.StatusBadRequest, 5014)
	h.fails(buildPath("acme", "field-app", apkOnly.ID)+"/downloadToken?type=aab", nil, http.StatusNotFound, 3001)
	h.fails(buildPath("acme", "field-app", apkOnly.ID)+"/downloadToken?type=zip", nil, http.StatusBadRequest, 400)

	// A missing type means auto.
	var tok struct{ Token string }
	h.ok(buildPath("acme", "field-app", apkOnly.ID)+"/downloadToken/", &tok)
	resp, _ := h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/"+tok.Token, nil)
	if want, _ := h.srv.Object(apkOnly.ID, "auto"); resp.StatusCode != http.StatusFound ||
		!strings.Contains(resp.Header.Get("Location"), "/auto/app-release.apk?") {
		t.Fatalf("no type: %d %s (%d bytes expected)", resp.StatusCode, resp.Header.Get("Location"), len(want))
	}
}

func TestTokenExpiry(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTokenTTL(100 * time.Millisecond)
	b := h.build("beta", "0.1.0")
	tok := h.token("beta-labs", "beta", b.ID, "file")
	time.Sleep(150 * time.Millisecond)
	resp, body := h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/"+tok, nil)
	var env testEnvelope
	json.Unmarshal(body, &env)
	if resp.StatusCode != http.StatusUnauthorized || env.Error == nil || env.Error.Code != 4005 {
		t.Fatalf("expired token: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/unknown", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown token: %d", resp.StatusCode)
	}
}

func TestSignedURLs(t *testing.T) {
	h := newHarness(t)
	b := h.build("beta", "0.1.0")
	loc := h.signedURL("beta-labs", "beta", b.ID, "file")
	u, _ := url.Parse(loc)

	q := u.Query()
	q.Set("sig", strings.Repeat("0", 64))
	bad := *u
	bad.RawQuery = q.Encode()
	unsigned := *u
	unsigned.RawQuery = ""
	q = u.Query()
	q.Set("expires", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	extended := *u
	extended.RawQuery = q.Encode()
	for _, v := range []*url.URL{&bad, &unsigned, &extended} {
		if resp, _ := h.do(http.MethodGet, v.String(), nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", v, resp.StatusCode)
		}
	}

	h.srv.SetURLTTL(time.Millisecond)
	loc = h.signedURL("beta-labs", "beta", b.ID, "file")
	u, _ = url.Parse(loc)
	exp, _ := strconv.ParseInt(u.Query().Get("expires"), 10, 64)
	time.Sleep(time.Until(time.Unix(exp, 0)) + 10*time.Millisecond)
	if resp, _ := h.do(http.MethodGet, loc, nil); resp.StatusCode != http.StatusGone {
		t.Fatalf("expired URL: %d, want 410", resp.StatusCode)
	}
}

func TestRanges(t *testing.T) {
	h := newHarness(t)
	b := h.build("field-ios", "3.1.0")
	loc := h.signedURL("acme", "field-ios", b.ID, "file")
	data, _ := h.srv.Object(b.ID, "file")
	size := len(data)
	total := "/" + strconv.Itoa(size)

	for _, tc := range []struct {
		spec         string
		first, last  int
		contentRange string
	}{
		{"bytes=0-99", 0, 99, "bytes 0-99" + total},
		{"bytes=1000-", 1000, size - 1, fmt.Sprintf("bytes 1000-%d", size-1) + total},
		{"bytes=-500", size - 500, size - 1, fmt.Sprintf("bytes %d-%d", size-500, size-1) + total},
		{"bytes=10-99999999999", 10, size - 1, fmt.Sprintf("bytes 10-%d", size-1) + total},
	} {
		resp, body := h.do(http.MethodGet, loc, http.Header{"Range": {tc.spec}})
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != tc.contentRange ||
			!bytes.Equal(body, data[tc.first:tc.last+1]) {
			t.Errorf("%s: %d %q, %d bytes", tc.spec, resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
		}
	}

	resp, _ := h.do(http.MethodGet, loc, http.Header{"Range": {fmt.Sprintf("bytes=%d-", size)}})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != "bytes */"+strconv.Itoa(size) {
		t.Errorf("past the end: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}

	etag := resp.Header.Get("ETag")
	resp, body := h.do(http.MethodGet, loc, http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"stale"`}})
	if resp.StatusCode != http.StatusOK || len(body) != size {
		t.Errorf("stale If-Range: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = h.do(http.MethodGet, loc, http.Header{"Range": {"bytes=0-9"}, "If-Range": {etag}})
	if resp.StatusCode != http.StatusPartialContent || len(body) != 10 {
		t.Errorf("matching If-Range: %d, %d bytes", resp.StatusCode, len(body))
	}

	resp, body = h.do(http.MethodHead, loc, nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(size) || len(body) != 0 {
		t.Errorf("HEAD: %d, length %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
	}

	h.srv.SetFaults(Faults{IgnoreRange: true})
	resp, body = h.do(http.MethodGet, loc, http.Header{"Range": {"bytes=0-99"}})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) || resp.Header.Get("Accept-Ranges") != "" {
		t.Errorf("IgnoreRange: %d, %d bytes, Accept-Ranges %q", resp.StatusCode, len(body), resp.Header.Get("Accept-Ranges"))
	}
}

func TestAPIFaults(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(Faults{APIStatus: http.StatusServiceUnavailable, APIRetryAfter: 1500 * time.Millisecond, APICount: 2})
	for range 2 {
		resp, body := h.do(http.MethodGet, h.srv.APIURL()+"/v1/organizations", http.Header{"Authorization": {"Bearer " + h.srv.Token()}})
		var env testEnvelope
		json.Unmarshal(body, &env)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "2" ||
			env.Status || env.Error == nil {
			t.Fatalf("fault: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if f := h.srv.Faults(); f.APIStatus != 0 || f.APICount != 0 {
		t.Fatalf("faults left: %+v", f)
	}
	var page testPage
	h.ok("/v1/organizations", &page)

	// Every request fails while APICount is 0, downloadToken included.
	h.srv.SetFaults(Faults{APIStatus: http.StatusTooManyRequests})
	b := h.build("beta", "0.1.0")
	h.fails(buildPath("beta-labs", "beta", b.ID)+"/downloadToken", nil, http.StatusTooManyRequests, 429)
	h.fails("/v1/organizations", nil, http.StatusTooManyRequests, 429)
	if c := h.srv.Counters(); c.APICalls["downloadToken"] != 1 || c.TokensMinted != 0 {
		t.Fatalf("counters: %+v", c)
	}

	h.srv.SetFaults(Faults{})
	tok := h.token("beta-labs", "beta", b.ID, "file")
	h.srv.SetFaults(Faults{APIDown: true})
	for _, u := range []string{h.srv.APIURL() + "/v1/organizations", h.srv.DownloadURL() + "/v1/download/" + tok} {
		if resp, err := h.client.Get(u); err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s with the API down: %d", u, resp.StatusCode)
		}
	}
	h.srv.SetFaults(Faults{})
	if resp, _ := h.do(http.MethodGet, h.srv.DownloadURL()+"/v1/download/"+tok, nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("token after outage: %d", resp.StatusCode)
	}
}

func TestStorageFaults(t *testing.T) {
	h := newHarness(t)
	b := h.build("field-app", "2.3.0")
	data, _ := h.srv.Object(b.ID, "file")
	loc := h.signedURL("acme", "field-app", b.ID, "file")

	h.srv.SetFaults(Faults{StorageStatus: http.StatusInternalServerError, StorageCount: 1})
	if resp, _ := h.do(http.MethodGet, loc, nil); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("storage fault: %d", resp.StatusCode)
	}
	if resp, body := h.do(http.MethodGet, loc, nil); resp.StatusCode != http.StatusOK || len(body) != len(data) {
		t.Fatalf("after the fault: %d, %d bytes", resp.StatusCode, len(body))
	}

	h.srv.ResetCounters()
	h.srv.SetFaults(Faults{CutAfter: 100_000, CutCount: 1})
	resp, err := h.client.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 100_000 || !bytes.Equal(body, data[:100_000]) {
		t.Fatalf("cut: %v after %d bytes", err, len(body))
	}
	if c := h.srv.Counters(); c.StorageBytes != 100_000 {
		t.Fatalf("StorageBytes %d after a cut at 100000", c.StorageBytes)
	}
	// A range shorter than CutAfter is not cut and does not use up the count.
	h.srv.SetFaults(Faults{CutAfter: 100_000})
	resp, body = h.do(http.MethodGet, loc, http.Header{"Range": {"bytes=0-999"}})
	if resp.StatusCode != http.StatusPartialContent || len(body) != 1000 {
		t.Fatalf("short range with CutAfter: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestLatencyAndBandwidth(t *testing.T) {
	h := newHarness(t)
	b := h.build("beta", "0.1.0")
	loc := h.signedURL("beta-labs", "beta", b.ID, "file")

	h.srv.SetLatency(150 * time.Millisecond)
	start := time.Now()
	var page testPage
	h.ok("/v1/organizations", &page)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("API answered in %v despite 150ms latency", d)
	}
	h.srv.SetLatency(0)

	const n, rate = 100_000, 250_000
	h.srv.SetBandwidth(rate)
	start = time.Now()
	resp, body := h.do(http.MethodGet, loc, http.Header{"Range": {fmt.Sprintf("bytes=0-%d", n-1)}})
	if d := time.Since(start); resp.StatusCode != http.StatusPartialContent || len(body) != n || d < 350*time.Millisecond {
		t.Fatalf("%d bytes at %d B/s took %v", len(body), rate, d)
	}
	h.srv.SetBandwidth(0)
}

func TestMutateObject(t *testing.T) {
	h := newHarness(t)
	b := h.build("field-app", "2.4.0")
	before, _ := h.srv.Object(b.ID, "auto")
	loc := h.signedURL("acme", "field-app", b.ID, "auto")
	resp, _ := h.do(http.MethodHead, loc, nil)
	etag := resp.Header.Get("ETag")

	if err := h.srv.MutateObject(b.ID, "auto"); err != nil {
		t.Fatal(err)
	}
	after, _ := h.srv.Object(b.ID, "file") // the same object as auto
	if len(after) != len(before) || bytes.Equal(after, before) {
		t.Fatal("object did not change, or changed length")
	}
	resp, body := h.do(http.MethodGet, loc, nil)
	if resp.Header.Get("ETag") == etag || !bytes.Equal(body, after) {
		t.Fatalf("after mutation: ETag %s (was %s), %d bytes", resp.Header.Get("ETag"), etag, len(body))
	}
	if err := h.srv.MutateObject(b.ID, "nope"); err == nil {
		t.Fatal("mutating a missing object succeeded")
	}
}

func TestAppleManifest(t *testing.T) {
	h := newHarness(t)
	b := h.build("field-ios", "3.1.0")
	manifest, ok := h.srv.Object(b.ID, "auto")
	if !ok || !bytes.Contains(manifest, []byte("<key>bundle-identifier</key>")) {
		t.Fatalf("manifest: %q", manifest)
	}
	loc := h.signedURL("acme", "field-ios", b.ID, "auto")
	if _, body := h.do(http.MethodGet, loc, nil); !bytes.Equal(body, manifest) {
		t.Fatal("served manifest differs from Object")
	}

	// Its package URL points at the download host and leads to the .ipa.
	_, rest, _ := bytes.Cut(manifest, []byte("<string>"+h.srv.DownloadURL()))
	pkgPath, _, _ := bytes.Cut(rest, []byte("</string>"))
	resp, _ := h.do(http.MethodGet, h.srv.DownloadURL()+string(pkgPath), nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("manifest URL %s: %d", pkgPath, resp.StatusCode)
	}
	_, ipa := h.do(http.MethodGet, resp.Header.Get("Location"), nil)
	if want, _ := h.srv.Object(b.ID, "file"); !bytes.Equal(ipa, want) {
		t.Fatal("manifest URL does not lead to the .ipa")
	}

	// No files[] entry describes the manifest.
	var build struct {
		Files []struct{ File struct{ OriginalName string } }
	}
	h.ok(buildPath("acme", "field-ios", b.ID), &build)
	for _, f := range build.Files {
		if strings.HasSuffix(f.File.OriginalName, ".plist") {
			t.Fatalf("files[] has %s", f.File.OriginalName)
		}
	}
}

func TestSampleData(t *testing.T) {
	d1, d2 := SampleData(), SampleData()
	var total int64
	seen := map[time.Time]bool{}
	ids := map[string]bool{}
	for i, o := range d1.Orgs {
		for j, a := range o.Apps {
			for k, b := range a.Builds {
				other := d2.Orgs[i].Apps[j].Builds[k]
				if b.ID != other.ID || !b.CreatedAt.Equal(other.CreatedAt) || !isObjectID(b.ID) || ids[b.ID] {
					t.Fatalf("build %s: not deterministic, invalid or duplicate", b.ID)
				}
				ids[b.ID] = true
				if seen[b.CreatedAt] {
					t.Fatalf("two builds created at %v", b.CreatedAt)
				}
				seen[b.CreatedAt] = true
				for typ, obj := range b.Objects {
					if typ != "auto" {
						total += int64(len(obj.Data))
					}
					if !bytes.Equal(obj.Data, other.Objects[typ].Data) {
						t.Fatalf("build %s %s: bytes differ between calls", b.ID, typ)
					}
					if strings.HasSuffix(obj.Name, ".apk") || strings.HasSuffix(obj.Name, ".aab") {
						if len(obj.Data)%4096 == 0 {
							t.Errorf("%s is a multiple of 4096 bytes", obj.Name)
						}
					}
				}
			}
		}
	}
	if total > 50<<20 {
		t.Fatalf("sample objects total %d bytes", total)
	}

	h := newHarness(t)
	ipa, _ := h.srv.Object(h.build("field-ios", "3.1.0").ID, "file")
	zr, err := zip.NewReader(bytes.NewReader(ipa), int64(len(ipa)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
	}
	if !names["Payload/FieldApp.app/Info.plist"] || !names["Payload/FieldApp.app/FieldApp"] {
		t.Fatalf("ipa entries: %v", names)
	}
}

func TestAddBuild(t *testing.T) {
	h := newHarness(t)
	d := h.srv.Data()
	nb := &Build{
		Status: "processed", OS: "android", BuildPlatform: "android", VersionName: "9.9.9", VersionCode: "999",
		OriginalExtension: "apk", CreatedAt: sampleEpoch.Add(time.Hour), PackageName: "io.betalabs.beta", MinOS: "26",
		Objects: map[string]*Object{"file": {Name: "beta.apk", Data: []byte("PK tiny")}},
	}
	if err := d.AddBuild("beta-labs", "beta", nb); err != nil || !isObjectID(nb.ID) {
		t.Fatalf("AddBuild: %v, id %q", err, nb.ID)
	}
	if err := d.AddBuild("beta-labs", "beta", &Build{ID: nb.ID}); err == nil {
		t.Fatal("duplicate id accepted")
	}
	if err := d.AddBuild("beta-labs", "nope", &Build{}); err == nil {
		t.Fatal("unknown app accepted")
	}
	var page testPage
	h.ok("/v1/organizations/beta-labs/apps/beta/builds", &page)
	var newest struct{ ID string }
	json.Unmarshal(page.Items[0], &newest)
	if page.TotalDocs != 2 || newest.ID != nb.ID {
		t.Fatalf("after AddBuild: %d builds, newest %s", page.TotalDocs, newest.ID)
	}
	// "auto" falls back to the APK stored under "file".
	loc := h.signedURL("beta-labs", "beta", nb.ID, "auto")
	if _, body := h.do(http.MethodGet, loc, nil); string(body) != "PK tiny" {
		t.Fatalf("auto served %q", body)
	}
}

func TestGenerateIPA(t *testing.T) {
	const size, entries = 4 << 20, 50
	ipa := GenerateIPA(size, entries, 7)
	if d := len(ipa) - size; d < -64<<10 || d > 64<<10 {
		t.Fatalf("GenerateIPA(%d) made %d bytes", size, len(ipa))
	}
	zr, err := zip.NewReader(bytes.NewReader(ipa), int64(len(ipa)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != entries+1 || zr.File[0].Name != "Payload/App.app/Info.plist" {
		t.Fatalf("%d entries, first %s", len(zr.File), zr.File[0].Name)
	}
	for _, f := range zr.File[1:] {
		if f.Method != zip.Store {
			t.Fatalf("%s is not stored", f.Name)
		}
	}
	rc, err := zr.File[len(zr.File)-1].Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil { // checks the CRC
		t.Fatal(err)
	}
	if !bytes.Equal(ipa, GenerateIPA(size, entries, 7)) {
		t.Fatal("GenerateIPA is not deterministic")
	}
}

func TestStartRejectsNonLoopback(t *testing.T) {
	if s, err := Start(Options{Addr: "0.0.0.0"}); err == nil {
		s.Close()
		t.Fatal("listening on 0.0.0.0 was allowed")
	}
}

// BenchmarkStorageStream measures unthrottled storage throughput on
// loopback; run without -race to see the real figure.
func BenchmarkStorageStream(b *testing.B) {
	data := GenerateIPA(256<<20, 200, 1)
	d := SampleData()
	bl := &Build{Status: "processed", OS: "ios", BuildPlatform: "ios", VersionName: "1", VersionCode: "2",
		OriginalExtension: "ipa", CreatedAt: sampleEpoch, PackageName: "com.example.generated", MinOS: "15.0",
		Objects: map[string]*Object{"file": {Name: "Big.ipa", Data: data}}}
	if err := d.AddBuild("acme", "field-ios", bl); err != nil {
		b.Fatal(err)
	}
	srv, err := Start(Options{Data: d})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	loc := srv.signedURL(bl.ID, "file", "Big.ipa")
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(loc)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(len(data)) {
			b.Fatalf("read %d bytes", n)
		}
	}
}
