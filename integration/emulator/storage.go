package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// signedURL returns an absolute storage URL for an object, valid for the
// current URL TTL. The signature covers the path and the expiry, like a
// cloud store's signed URLs.
func (s *Server) signedURL(buildID, typ, name string) string {
	p := objectPath(buildID, typ, name)
	exp := strconv.FormatInt(ceilUnix(time.Now().Add(time.Duration(s.urlTTL.Load()))), 10)
	sig := s.sign(p, exp)
	s.secrets.add(sig)
	q := url.Values{"expires": {exp}, "sig": {sig}}
	return s.storageURL + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode()
}

// ceilUnix rounds up to whole seconds, so a URL lives at least its TTL.
func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

func (s *Server) sign(path, expires string) string {
	m := hmac.New(sha256.New, s.signKey)
	m.Write([]byte(path + "\n" + expires))
	return hex.EncodeToString(m.Sum(nil))
}

// checkSignature answers 0 for a valid signed URL, 403 for a missing or
// wrong signature and 410 for an expired one.
func (s *Server) checkSignature(u *url.URL) int {
	q := u.Query()
	exp := q.Get("expires")
	got, err := hex.DecodeString(q.Get("sig"))
	want, _ := hex.DecodeString(s.sign(u.Path, exp))
	if err != nil || !hmac.Equal(got, want) {
		return http.StatusForbidden
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return http.StatusForbidden
	}
	if !time.Now().Before(time.Unix(unix, 0)) {
		return http.StatusGone
	}
	return 0
}

// serveStorage is the object store behind the download redirects:
//
//	GET|HEAD /o/{buildId}/{type}/{name}?expires=<unix>&sig=<hex>
//
// Errors have S3-style XML bodies.
func (s *Server) serveStorage(w http.ResponseWriter, r *http.Request) {
	if !s.delay(r) {
		return
	}
	s.stats.storageRequests.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStorageError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The method is not allowed")
		return
	}
	if status := s.takeStorageFault(); status != 0 {
		code := "InternalError"
		if status == http.StatusServiceUnavailable {
			code = "SlowDown"
		}
		writeStorageError(w, status, code, http.StatusText(status))
		return
	}
	switch s.checkSignature(r.URL) {
	case http.StatusForbidden:
		writeStorageError(w, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature is not valid")
		return
	case http.StatusGone:
		writeStorageError(w, http.StatusGone, "ExpiredToken", "The signed URL has expired")
		return
	}
	o, data, modified, ok := s.lookupObject(r.URL.Path)
	if !ok {
		writeStorageError(w, http.StatusNotFound, "NoSuchKey", "The object does not exist")
		return
	}
	s.serveObject(w, r, o, data, modified)
}

// lookupObject finds the object at a storage path, with its current
// bytes and the time it was stored (the build's creation).
func (s *Server) lookupObject(p string) (o *Object, data []byte, modified time.Time, ok bool) {
	rest, ok := strings.CutPrefix(p, "/o/")
	parts := strings.SplitN(rest, "/", 3)
	if !ok || len(parts) != 3 {
		return nil, nil, time.Time{}, false
	}
	buildID, typ, name := parts[0], parts[1], parts[2]
	s.data.mu.RLock()
	defer s.data.mu.RUnlock()
	_, app, b := s.data.locate(buildID)
	if b == nil {
		return nil, nil, time.Time{}, false
	}
	o = s.object(app, b, typ)
	if o == nil || o.Name != name {
		return nil, nil, time.Time{}, false
	}
	return o, o.Data, b.CreatedAt, true
}

// serveObject answers with the object's bytes, or the single range asked
// for. It writes straight from the stored slice: no per-request copy, so a
// 1 GiB object streams at memory speed.
func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, o *Object, data []byte, modified time.Time) {
	sum := s.digests.sum(o, data)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	size := int64(len(data))
	h := w.Header()
	h.Set("Content-Type", mimeType(o.Name))
	h.Set("ETag", etag)
	h.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))

	status, start, end := http.StatusOK, int64(0), size
	// With IgnoreRange the store behaves as one without range support:
	// it neither advertises nor honours ranges.
	if !s.Faults().IgnoreRange {
		h.Set("Accept-Ranges", "bytes")
		if spec := r.Header.Get("Range"); spec != "" && ifRangeMatches(r, etag, modified) {
			first, last, err := parseRange(spec, size)
			switch {
			case errors.Is(err, errUnsatisfiable):
				h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
				writeStorageError(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable")
				return
			case err == nil:
				status, start, end = http.StatusPartialContent, first, last+1
				h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
			}
			// A malformed or multi-part Range is ignored, as RFC 9110 allows.
		}
	}
	body := data[start:end]
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	cutAt, cut := s.takeCut(int64(len(body)))
	w.WriteHeader(status)
	if cut {
		body = body[:cutAt]
	}
	s.stream(w, r, body)
	if cut {
		// Abort after the bytes are on the wire: the client sees a body
		// shorter than Content-Length on a closed connection.
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
}

// ifRangeMatches reports whether an If-Range precondition, if any, lets
// a Range apply: the validator must be the current strong ETag or exactly
// the Last-Modified date. Otherwise the whole object is sent.
func ifRangeMatches(r *http.Request, etag string, modified time.Time) bool {
	v := r.Header.Get("If-Range")
	switch {
	case v == "":
		return true
	case strings.HasPrefix(v, `"`):
		return v == etag
	case strings.HasPrefix(v, "W/"):
		return false // weak validators never match for ranges
	}
	t, err := http.ParseTime(v)
	return err == nil && t.Unix() == modified.Unix()
}

var (
	errUnsatisfiable = errors.New("range not satisfiable")
	errBadRange      = errors.New("malformed or unsupported range")
)

// parseRange parses a single byte range, "bytes=a-b", "bytes=a-" or
// "bytes=-n", against a representation of size bytes, and returns its
// first and last byte offsets.
func parseRange(spec string, size int64) (first, last int64, err error) {
	unit, set, ok := strings.Cut(spec, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(set, ",") {
		return 0, 0, errBadRange
	}
	a, b, ok := strings.Cut(strings.TrimSpace(set), "-")
	if !ok {
		return 0, 0, errBadRange
	}
	if a == "" { // suffix: the last n bytes
		n, ok := parseOffset(b)
		switch {
		case !ok:
			return 0, 0, errBadRange
		case n == 0 || size == 0:
			return 0, 0, errUnsatisfiable
		}
		return size - min(n, size), size - 1, nil
	}
	first, ok = parseOffset(a)
	if !ok {
		return 0, 0, errBadRange
	}
	last = size - 1
	if b != "" {
		if last, ok = parseOffset(b); !ok || last < first {
			return 0, 0, errBadRange
		}
	}
	if first >= size {
		return 0, 0, errUnsatisfiable
	}
	return first, min(last, size-1), nil
}

// parseOffset accepts plain decimal digits only; strconv alone would also
// take signs.
func parseOffset(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Chunk sizes of storage bodies. Unthrottled chunks are large so that
// writing costs few syscalls; throttled ones carry about 20ms of data so
// that the pacing is smooth.
const (
	fastChunk     = 1 << 20
	maxSlowChunk  = 256 << 10
	pacingPeriods = 50 // chunks per second when throttled
)

// stream writes body in chunks, keeping under the bandwidth cap, and
// counts the bytes written.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, body []byte) {
	rc := http.NewResponseController(w)
	var p pacer
	for len(body) > 0 {
		n := min(p.chunk(s.bandwidth.Load()), len(body))
		written, err := w.Write(body[:n])
		s.stats.storageBytes.Add(int64(written))
		if err != nil {
			return
		}
		body = body[n:]
		if p.rate > 0 {
			// Push the chunk out now, or the response buffer would bunch
			// small chunks together and defeat the pacing.
			rc.Flush()
			if !Sleep(r.Context(), p.wait(written), s.done) {
				return
			}
		}
	}
}

// pacer spaces out chunks so that the average rate since the cap was
// last set stays at the cap.
type pacer struct {
	rate  int64 // bytes per second; 0 = unlimited
	start time.Time
	sent  int64
}

// chunk returns the size of the next chunk under the given cap. A new cap
// restarts the average, so flipping it mid-response takes effect at once.
func (p *pacer) chunk(rate int64) int {
	if rate != p.rate {
		*p = pacer{rate: rate, start: time.Now()}
	}
	if rate <= 0 {
		return fastChunk
	}
	return int(min(max(rate/pacingPeriods, 1), maxSlowChunk))
}

// wait records n more bytes sent and returns how long to pause before
// the next chunk.
func (p *pacer) wait(n int) time.Duration {
	p.sent += int64(n)
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	return time.Until(due)
}

func writeStorageError(w http.ResponseWriter, status int, code, message string) {
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>\n", code, message)
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}
