package emulator

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apiError is an error the API answers with an error envelope.
type apiError struct {
	status  int // HTTP status
	code    int // Applivery error code
	message string
}

func (e *apiError) Error() string { return e.message }

// Documented codes, with the HTTP statuses inferred in the reference.
// Codes the documentation does not give (bad parameters, wrong method,
// injected faults) reuse the HTTP status as the code.
var (
	errNoAuth       = &apiError{http.StatusUnauthorized, 4002, "No auth token"}
	errBadToken     = &apiError{http.StatusUnauthorized, 2001, "Token not valid"}
	errTokenExpired = &apiError{http.StatusUnauthorized, 4005, "Token Expired"}
	errNotFound     = &apiError{http.StatusNotFound, 3001, "Entity not found"}
	errNotProcessed = &apiError{http.StatusBadRequest, 5014, "Build Not Processed"}
	errMethod       = &apiError{http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "Method Not Allowed"}
)

func badParam(name string) *apiError {
	return &apiError{http.StatusBadRequest, http.StatusBadRequest, "Invalid parameter: " + name}
}

// envelope is the body of every API and download-host JSON response.
type envelope struct {
	Status bool       `json:"status"`
	Data   any        `json:"data,omitempty"`
	Error  *errorJSON `json:"error,omitempty"`
}

type errorJSON struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v envelope) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshaled; failing here is a bug.
		panic("emulator: marshal response: " + err.Error())
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func writeData(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, envelope{Status: true, Data: data})
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, envelope{Error: &errorJSON{Code: e.code, Message: e.message}})
}

// apiRoute is a parsed API path. kind names the endpoint as counted in
// Counters.APICalls.
type apiRoute struct {
	kind            string
	org, app, build string
}

// The API paths are prefixes of
// /v1/organizations/{org}/apps/{app}/builds/{build}/downloadToken;
// the number of segments tells the endpoint.
var (
	apiKinds    = map[int]string{2: "organizations", 4: "apps", 5: "app", 6: "builds", 7: "build", 8: "downloadToken"}
	apiLiterals = map[int]string{0: "v1", 1: "organizations", 3: "apps", 5: "builds", 7: "downloadToken"}
)

// parseAPIPath parses an API path, with or without a trailing slash.
func parseAPIPath(p string) (apiRoute, bool) {
	p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
	seg := strings.Split(p, "/")
	kind, ok := apiKinds[len(seg)]
	if !ok {
		return apiRoute{}, false
	}
	for i, s := range seg {
		if lit, ok := apiLiterals[i]; s == "" || ok && s != lit {
			return apiRoute{}, false
		}
	}
	rt := apiRoute{kind: kind}
	for i, field := range []*string{&rt.org, &rt.app, &rt.build} {
		if j := 2 + 2*i; j < len(seg) {
			*field = seg[j]
		}
	}
	return rt, true
}

// serveAPI is the API host. Every endpoint needs the service-account
// bearer token:
//
//	GET /v1/organizations
//	GET /v1/organizations/{org}/apps
//	GET /v1/organizations/{org}/apps/{app}
//	GET /v1/organizations/{org}/apps/{app}/builds
//	GET /v1/organizations/{org}/apps/{app}/builds/{buildId}
//	GET /v1/organizations/{org}/apps/{app}/builds/{buildId}/downloadToken?type=auto|file|aab
//
// {org} and {app} are ids or slugs; a trailing slash is accepted.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if s.dropIfDown(w) || !s.delay(r) {
		return
	}
	rt, found := parseAPIPath(r.URL.Path)
	if found {
		s.stats.countAPI(rt.kind)
	}
	// A test may rewrite the answer (hostile.go); the real API never does.
	if rec := s.overrideRecorder(w, r, rt); rec != nil {
		defer rec.send()
		w = rec
	}
	// Injected failures come first, as from a proxy in front of the API.
	if status, retryAfter, ok := s.takeAPIFault(); ok {
		if retryAfter > 0 {
			secs := (retryAfter + time.Second - 1) / time.Second
			w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		}
		writeError(w, &apiError{status, status, http.StatusText(status)})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, errMethod)
		return
	}
	if err := s.authorize(r); err != nil {
		writeError(w, err)
		return
	}
	if !found {
		writeError(w, errNotFound)
		return
	}
	s.data.mu.RLock()
	data, err := s.handleAPI(rt, r.URL.Query())
	s.data.mu.RUnlock()
	if err != nil {
		writeError(w, err)
		return
	}
	writeData(w, data)
}

// authorize checks the service-account bearer token.
func (s *Server) authorize(r *http.Request) *apiError {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || strings.EqualFold(scheme, "Bearer") && token == "" {
		return errNoAuth
	}
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(token), []byte(s.token)) != 1 {
		return errBadToken
	}
	return nil
}

// handleAPI answers an authorized request. The caller holds s.data.mu.
func (s *Server) handleAPI(rt apiRoute, q url.Values) (any, *apiError) {
	if rt.kind == "organizations" {
		return s.listOrgs(q), nil
	}
	// Validate before looking anything up: a malformed id is a 400 even
	// under an unknown app.
	if rt.build != "" {
		id, ok := parseObjectID(rt.build)
		if !ok {
			return nil, badParam("buildId")
		}
		rt.build = id
	}
	org := s.data.org(rt.org)
	if org == nil {
		return nil, errNotFound
	}
	if rt.kind == "apps" {
		return s.listApps(org, q), nil
	}
	app := org.app(rt.app)
	if app == nil {
		return nil, errNotFound
	}
	switch rt.kind {
	case "app":
		return s.renderApp(org, app), nil
	case "builds":
		return s.listBuilds(org, app, q), nil
	}
	// A build under another app or organization is not found, as if it
	// did not exist.
	b := app.build(rt.build)
	if b == nil {
		return nil, errNotFound
	}
	if rt.kind == "build" {
		return s.renderBuild(org, app, b), nil
	}
	return s.downloadToken(app, b, q)
}

// names are what organizations and apps are filtered and sorted by.
type names struct{ id, name, slug string }

// filterNamed applies the name and slug filters and the id, name or slug
// sort of a list of organizations or apps, leaving items as it was.
func filterNamed[T any](items []*T, q url.Values, of func(*T) names) []*T {
	out := filter(slices.Clone(items), q, map[string]func(*T, string) bool{
		"name": func(x *T, v string) bool { return containsFold(of(x).name, v) },
		"slug": func(x *T, v string) bool { return of(x).slug == v },
	})
	sortBy(out, q.Get("sort"), "", map[string]func(a, b *T) int{
		"id":   func(a, b *T) int { return strings.Compare(of(a).id, of(b).id) },
		"name": func(a, b *T) int { return strings.Compare(of(a).name, of(b).name) },
		"slug": func(a, b *T) int { return strings.Compare(of(a).slug, of(b).slug) },
	})
	return out
}

func (s *Server) listOrgs(q url.Values) *pageJSON {
	orgs := filterNamed(s.data.Orgs, q, func(o *Org) names { return names{o.ID, o.Name, o.Slug} })
	return paginate(orgs, q, renderOrg)
}

func (s *Server) listApps(org *Org, q url.Values) *pageJSON {
	apps := filterNamed(org.Apps, q, func(a *App) names { return names{a.ID, a.Name, a.Slug} })
	return paginate(apps, q, func(a *App) appJSON { return s.renderApp(org, a) })
}

func (s *Server) listBuilds(org *Org, app *App, q url.Values) *pageJSON {
	builds := slices.Clone(app.Builds)
	builds = filter(builds, q, map[string]func(*Build, string) bool{
		"status":      func(b *Build, v string) bool { return b.Status == v },
		"os":          func(b *Build, v string) bool { return b.OS == v },
		"versionName": func(b *Build, v string) bool { return b.VersionName == v },
	})
	// Newest first unless asked otherwise, as the Integrations list is
	// documented to do.
	sortBy(builds, q.Get("sort"), "createdAt:desc", map[string]func(a, b *Build) int{
		"id":          func(a, b *Build) int { return strings.Compare(a.ID, b.ID) },
		"createdAt":   func(a, b *Build) int { return a.CreatedAt.Compare(b.CreatedAt) },
		"updatedAt":   func(a, b *Build) int { return buildUpdatedAt(a).Compare(buildUpdatedAt(b)) },
		"versionName": func(a, b *Build) int { return strings.Compare(a.VersionName, b.VersionName) },
	})
	return paginate(builds, q, func(b *Build) buildJSON { return s.renderBuild(org, app, b) })
}

// downloadToken mints a token for one of a build's objects.
func (s *Server) downloadToken(app *App, b *Build, q url.Values) (any, *apiError) {
	typ := q.Get("type")
	switch typ {
	case "":
		// Documented as both required and defaulting to auto: default.
		typ = typeAuto
	case typeAuto, typeFile, typeAAB:
	default:
		return nil, badParam("type")
	}
	if b.Status != statusProcessed {
		return nil, errNotProcessed
	}
	// Attachments (fileId) are not emulated: no build has any.
	if q.Has("fileId") || s.object(app, b, typ) == nil {
		return nil, errNotFound
	}
	token, expires := s.tokens.mint(b.ID, typ, time.Duration(s.tokenTTL.Load()))
	s.stats.tokensMinted.Add(1)
	s.secrets.add(token)
	return tokenJSON{Token: token, ExpiresAt: isoTime(expires)}, nil
}

type tokenJSON struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expiresAt"`
}

// pageJSON is the paginated list envelope of mongoose-paginate-v2, whose
// key set the reference documents.
type pageJSON struct {
	Items         any  `json:"items"`
	TotalDocs     int  `json:"totalDocs"`
	Limit         int  `json:"limit"`
	Page          int  `json:"page"`
	TotalPages    int  `json:"totalPages"`
	PagingCounter int  `json:"pagingCounter"`
	HasPrevPage   bool `json:"hasPrevPage"`
	HasNextPage   bool `json:"hasNextPage"`
	PrevPage      *int `json:"prevPage"`
	NextPage      *int `json:"nextPage"`
}

const (
	defaultLimit = 100
	maxLimit     = 100
)

// paginate cuts one page out of all and renders its items. Bad or missing
// page and limit values fall back to page 1 and the default limit; limit
// is clamped to maxLimit.
func paginate[T, J any](all []T, q url.Values, render func(T) J) *pageJSON {
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)

	p := &pageJSON{
		TotalDocs:     len(all),
		Limit:         limit,
		Page:          page,
		TotalPages:    max((len(all)+limit-1)/limit, 1), // as mongoose-paginate-v2: never 0
		PagingCounter: (page-1)*limit + 1,
		HasPrevPage:   page > 1,
	}
	p.HasNextPage = page < p.TotalPages
	if p.HasPrevPage {
		prev := page - 1
		p.PrevPage = &prev
	}
	if p.HasNextPage {
		next := page + 1
		p.NextPage = &next
	}
	start := min((page-1)*limit, len(all))
	end := min(start+limit, len(all))
	items := make([]J, 0, end-start) // not nil: a page past the end lists "items": []
	for _, it := range all[start:end] {
		items = append(items, render(it))
	}
	p.Items = items
	return p
}

// filter keeps the items matching every filter present in q.
func filter[T any](items []T, q url.Values, filters map[string]func(T, string) bool) []T {
	for name, match := range filters {
		if !q.Has(name) {
			continue
		}
		v := q.Get(name)
		items = slices.DeleteFunc(items, func(it T) bool { return !match(it, v) })
	}
	return items
}

// sortBy orders items by a sort parameter of the form field[:asc|:desc].
// Unknown fields or a malformed parameter keep the default order; with
// def == "" that is the stored order, like MongoDB's natural order.
func sortBy[T any](items []T, param, def string, fields map[string]func(a, b T) int) {
	if param == "" {
		param = def
	}
	field, dir, _ := strings.Cut(param, ":")
	cmp, ok := fields[field]
	if !ok || dir != "" && dir != "asc" && dir != "desc" {
		if param == def {
			return
		}
		sortBy(items, def, def, fields)
		return
	}
	slices.SortStableFunc(items, func(a, b T) int {
		if dir == "desc" {
			return cmp(b, a)
		}
		return cmp(a, b)
	})
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
