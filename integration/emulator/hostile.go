package emulator

// Hostile answers, for tests only. The real API is not known to send any
// of them; they are what a client may still meet behind a proxy, a load
// balancer or a half-deployed API: a page that is not JSON, a body cut
// short, an envelope without its data. A Server sends them only while a
// test has set an override with SetAPIOverride; without one, every
// answer is the faithful one the rest of the package documents.
//
// Hostile names need no knob: Dataset fields are plain, so a test builds
// an Org{Slug: "../x"} or an App{Slug: ""} and the API lists it exactly
// as stored, as an API that does not validate its data would. Lookups do
// not change: {org} and {app} are matched against ids, then slugs, as
// segments of the decoded path, so a slug that is not one segment ("",
// "a/b") can never be asked for, and the others are found as stored where
// the real API's pattern for them, [a-zA-Z0-9-]{3,}, would refuse them.
// Clients that ask by id, as appliveryfs does, see no difference.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

// APIRequest is the request an override rewrites the answer of.
type APIRequest struct {
	Kind            string // as counted in Counters.APICalls; "" for a path that is no endpoint
	Org, App, Build string // path parameters as asked (id or slug); "" where absent
	Query           url.Values
}

// APIAnswer is one answer of the API host.
type APIAnswer struct {
	Status      int
	ContentType string
	Body        []byte
	// Cut > 0 announces len(Body) bytes in Content-Length but closes the
	// connection after the first Cut, as a proxy dying mid-answer.
	Cut int
}

// APIOverride returns the answer to send instead of a, the one the
// emulator would have given (injected Faults included).
type APIOverride func(req APIRequest, a APIAnswer) APIAnswer

// SetAPIOverride makes every API answer pass through o, for tests of
// clients facing a broken API; nil restores the faithful answers. The
// download and storage hosts are not affected. Counters count requests as
// before.
func (s *Server) SetAPIOverride(o APIOverride) {
	overrides.mu.Lock()
	defer overrides.mu.Unlock()
	if o == nil {
		delete(overrides.m, s)
		return
	}
	if overrides.m == nil {
		overrides.m = make(map[*Server]APIOverride)
	}
	if _, watched := overrides.m[s]; !watched {
		// Forget the server once it closes, so a test that does not
		// reset its override does not keep the server in memory.
		go func() {
			<-s.done
			overrides.mu.Lock()
			delete(overrides.m, s)
			overrides.mu.Unlock()
		}()
	}
	overrides.m[s] = o
}

// overrides holds the override of each Server that has one. It lives
// beside Server rather than in it so that a knob for tests only stays out
// of the types the faithful emulator is made of.
var overrides struct {
	mu sync.Mutex
	m  map[*Server]APIOverride
}

func (s *Server) apiOverride() APIOverride {
	overrides.mu.Lock()
	defer overrides.mu.Unlock()
	return overrides.m[s]
}

// ForKind applies rewrite to the answers of one kind of endpoint
// ("organizations", "apps", "builds", ...) and leaves the others alone.
func ForKind(kind string, rewrite func(APIAnswer) APIAnswer) APIOverride {
	return func(req APIRequest, a APIAnswer) APIAnswer {
		if req.Kind != kind {
			return a
		}
		return rewrite(a)
	}
}

// Truncated keeps the first half of the body, with a Content-Length that
// matches it: a complete answer whose JSON ends too soon.
func Truncated(a APIAnswer) APIAnswer {
	a.Body = a.Body[:len(a.Body)/2]
	return a
}

// CutShort sends the first half of the body and closes the connection,
// with a Content-Length that announced all of it.
func CutShort(a APIAnswer) APIAnswer {
	a.Cut = max(len(a.Body)/2, 1)
	return a
}

// Corrupted writes a NUL byte into the middle of the body: never valid
// JSON, in a string or out of one, whatever the answer was.
func Corrupted(a APIAnswer) APIAnswer {
	if len(a.Body) == 0 {
		a.Body = []byte{0}
		return a
	}
	a.Body = bytes.Clone(a.Body)
	a.Body[len(a.Body)/2] = 0
	return a
}

// WithoutData answers 200 with an envelope that says success and holds
// no data.
func WithoutData(APIAnswer) APIAnswer {
	return APIAnswer{Status: http.StatusOK, ContentType: "application/json; charset=utf-8", Body: []byte(`{"status":true}` + "\n")}
}

// HTMLErrorPage returns a rewrite to the error page a proxy in front of
// the API serves when the API is unreachable, e.g. 502 Bad Gateway.
func HTMLErrorPage(status int) func(APIAnswer) APIAnswer {
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	page := "<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n<center><h1>" + text +
		"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	return func(APIAnswer) APIAnswer {
		return APIAnswer{Status: status, ContentType: "text/html", Body: []byte(page)}
	}
}

// answerRecorder holds an answer of serveAPI until the override has
// rewritten it.
type answerRecorder struct {
	w      http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
	req    APIRequest
	o      APIOverride
}

// overrideRecorder returns, when a test has set an override, the writer
// serveAPI must answer into; its send writes the rewritten answer to w.
func (s *Server) overrideRecorder(w http.ResponseWriter, r *http.Request, rt apiRoute) *answerRecorder {
	o := s.apiOverride()
	if o == nil {
		return nil
	}
	return &answerRecorder{w: w, header: http.Header{}, o: o,
		req: APIRequest{Kind: rt.kind, Org: rt.org, App: rt.app, Build: rt.build, Query: r.URL.Query()}}
}

func (rec *answerRecorder) Header() http.Header { return rec.header }

func (rec *answerRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *answerRecorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(p)
}

// send writes the rewritten answer. An answer serveAPI never wrote (the
// client went away during a delay) is not sent.
func (rec *answerRecorder) send() {
	if rec.status == 0 {
		return
	}
	a := rec.o(rec.req, APIAnswer{Status: rec.status, ContentType: rec.header.Get("Content-Type"), Body: rec.body.Bytes()})
	h := rec.w.Header()
	for k, v := range rec.header {
		h[k] = v // Retry-After, Allow
	}
	h.Del("Content-Type")
	if a.ContentType != "" {
		h.Set("Content-Type", a.ContentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(a.Body)))
	rec.w.WriteHeader(validStatus(a.Status))
	if a.Cut <= 0 || a.Cut >= len(a.Body) {
		rec.w.Write(a.Body)
		return
	}
	rec.w.Write(a.Body[:a.Cut])
	// Abort after the bytes are on the wire: the client sees a body
	// shorter than Content-Length on a closed connection.
	http.NewResponseController(rec.w).Flush()
	panic(http.ErrAbortHandler)
}
