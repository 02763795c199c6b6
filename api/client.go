// Package api speaks the Applivery Workspace API: it lists organizations,
// apps and builds with a Service Account token, mints single-use download
// tokens, resolves them to storage URLs, and reads byte ranges of a build's
// files from storage (see Object).
package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Default hosts of the real service.
const (
	DefaultAPIURL      = "https://api.applivery.io"
	DefaultDownloadURL = "https://download-api.applivery.io"
)

// pageLimit is the page size asked for; the server may clamp it, and
// listing follows hasNextPage either way.
const pageLimit = 100

// Config configures a Client.
type Config struct {
	APIURL      string // "" means DefaultAPIURL
	DownloadURL string // "" means DefaultDownloadURL
	Token       string // Service Account bearer token; sent to the API host only
	UserAgent   string
	// StorageConns caps idle connections kept per storage host; parallel
	// range reads need one each. 0 means 64.
	StorageConns int
	// Logger gets mints, re-mints and retries at debug level; nil for none.
	// Nothing logged ever holds a token or a signed URL.
	Logger *slog.Logger
}

// Client is safe for concurrent use.
type Client struct {
	apiURL      *url.URL
	downloadURL *url.URL
	token       string
	userAgent   string
	apiHTTP     *http.Client // API and download host
	storageHTTP *http.Client // storage: never sees the bearer token
	log         *slog.Logger
	stats       stats
}

// NewClient checks cfg and returns a client.
func NewClient(cfg Config) (*Client, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if cfg.DownloadURL == "" {
		cfg.DownloadURL = DefaultDownloadURL
	}
	if cfg.StorageConns <= 0 {
		cfg.StorageConns = 64
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "appliveryfs"
	}
	apiURL, err := parseBase("API URL", cfg.APIURL)
	if err != nil {
		return nil, err
	}
	dlURL, err := parseBase("download URL", cfg.DownloadURL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, errors.New("no service account token given")
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	apiTransport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	// Storage reads run many Range requests at once; over HTTP/2 they would
	// share one TCP connection and its per-connection throughput, which is
	// exactly the limit parallel fetching is meant to escape. So HTTP/1.1
	// with a connection per request in flight.
	storageTransport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          cfg.StorageConns * 2,
		MaxIdleConnsPerHost:   cfg.StorageConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:    true, // byte ranges of the stored object, never a re-encoding
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	logger := cfg.Logger
	if logger == nil {
		logger = discard
	}
	return &Client{
		log:         logger,
		apiURL:      apiURL,
		downloadURL: dlURL,
		token:       cfg.Token,
		userAgent:   cfg.UserAgent,
		apiHTTP:     &http.Client{Transport: apiTransport, CheckRedirect: noRedirect},
		storageHTTP: &http.Client{Transport: storageTransport, CheckRedirect: stripAuthRedirect},
	}, nil
}

// stripAuthRedirect follows storage redirects (some object stores answer a
// signed URL with a regional redirect) without carrying any credential.
func stripAuthRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many storage redirects")
	}
	req.Header.Del("Authorization")
	return nil
}

func parseBase(what, s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, fmt.Errorf("bad %s %q: %w", what, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bad %s %q: want http(s)://host", what, s)
	}
	return u, nil
}

// envelope is Applivery's wrapper around every JSON answer.
type envelope struct {
	Status *bool           `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  *struct {
		Code    FlexInt `json:"code"`
		Message string  `json:"message"`
	} `json:"error"`
}

// page is the paginated list shape inside data.
type page[T any] struct {
	Items       []T  `json:"items"`
	HasNextPage bool `json:"hasNextPage"`
	Page        int  `json:"page"`
	NextPage    *int `json:"nextPage"`
}

// apiAttempts bounds how often one API call is tried when the answer is
// temporary (5xx, 429, a dropped connection): enough to ride out a blip,
// few enough that an unreachable host fails within seconds.
const apiAttempts = 4

// getJSON performs an authenticated GET on the API host and decodes data
// into out, retrying temporary failures with backoff and Retry-After.
func (c *Client) getJSON(ctx context.Context, op, p string, q url.Values, out any) error {
	var b backoff
	for try := 1; ; try++ {
		err := c.getJSONOnce(ctx, op, p, q, out)
		if err == nil || try == apiAttempts || ctx.Err() != nil || !Temporary(err) {
			return err
		}
		c.noteRetry(ctx, op, err)
		if b.wait(ctx, err) != nil {
			return err
		}
	}
}

func (c *Client) getJSONOnce(ctx context.Context, op, p string, q url.Values, out any) error {
	u := withPath(c.apiURL, p)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.apiHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", op, err)
	}
	return decodeEnvelope(op, resp, body, out)
}

// decodeEnvelope turns an answer into data or an *Error. An envelope with an
// error object is a failure whatever status says; a body that is not JSON
// (a proxy's HTML page) is reported with its first bytes.
func decodeEnvelope(op string, resp *http.Response, body []byte, out any) error {
	fail := &Error{Op: op, StatusCode: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			fail.Message = snippet(body)
			return fail
		}
		// A JSON body is quoted by its size only: it is data, and a
		// download token in it must not reach an error message, let alone
		// a log. Another kind (a proxy's HTML page) says what went wrong.
		ct := contentType(resp)
		if strings.Contains(ct, "json") || ct == "untyped" {
			return fmt.Errorf("%s: HTTP %d with a %d-byte %s body that is not an Applivery envelope (%v)",
				op, resp.StatusCode, len(body), ct, err)
		}
		return fmt.Errorf("%s: HTTP %d with a %s body that is not an Applivery envelope (%v): %s",
			op, resp.StatusCode, ct, err, snippet(body))
	}
	if env.Error != nil || (env.Status != nil && !*env.Status) || resp.StatusCode < 200 || resp.StatusCode > 299 {
		if env.Error != nil {
			fail.Code = int(env.Error.Code.Value)
			fail.Message = env.Error.Message
		} else if resp.StatusCode < 200 || resp.StatusCode > 299 {
			fail.Message = snippet(body)
		}
		if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			fail.StatusCode = 0 // failure said by the envelope only
		}
		return fail
	}
	if out == nil {
		return nil
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return fmt.Errorf("%s: answer has no data", op)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("%s: decode data: %w", op, err)
	}
	return nil
}

// snippet quotes the start of a body for an error message.
// contentType names what a body claims to be, for errors.
func contentType(resp *http.Response) string {
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		return strings.SplitN(ct, ";", 2)[0]
	}
	return "untyped"
}

func snippet(b []byte) string {
	const max = 120
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return strconv.Quote(s)
}

// scrubURLError drops the URL from a transport error: download URLs carry
// single-use tokens and storage URLs carry signatures, neither may be
// logged. A connection that closed without an answer becomes
// io.ErrUnexpectedEOF, so no caller can mistake it for an end of file.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		inner := ue.Err
		if errors.Is(inner, io.EOF) {
			inner = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s %s: %w", ue.Op, redact(ue.URL), inner)
	}
	return err
}

// redact keeps scheme and host of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(url)"
	}
	return u.Scheme + "://" + u.Host + "/..."
}

// listAll walks every page of a paginated endpoint.
func listAll[T any](ctx context.Context, c *Client, op, p string, q url.Values) ([]T, error) {
	var all []T
	if q == nil {
		q = url.Values{}
	}
	for pg := 1; ; {
		q.Set("page", strconv.Itoa(pg))
		q.Set("limit", strconv.Itoa(pageLimit))
		var got page[T]
		if err := c.getJSON(ctx, op, p, q, &got); err != nil {
			return nil, err
		}
		all = append(all, got.Items...)
		if !got.HasNextPage || len(got.Items) == 0 {
			return all, nil
		}
		next := pg + 1
		if got.NextPage != nil && *got.NextPage > pg {
			next = *got.NextPage
		}
		if next > 100000 {
			return nil, fmt.Errorf("%s: more than 100000 pages", op)
		}
		pg = next
	}
}

func esc(s string) string { return url.PathEscape(s) }

// withPath appends an already escaped path to a base URL. Path holds the
// unescaped form and RawPath the escaped one; setting only Path would
// escape the escapes again.
func withPath(base *url.URL, escaped string) url.URL {
	u := *base
	u.RawPath = base.EscapedPath() + escaped
	if p, err := url.PathUnescape(u.RawPath); err == nil {
		u.Path = p
	}
	return u
}

// Organizations lists every organization the token can see.
func (c *Client) Organizations(ctx context.Context) ([]Organization, error) {
	return listAll[Organization](ctx, c, "list organizations", "/v1/organizations", nil)
}

// Apps lists the apps of an organization (id or slug).
func (c *Client) Apps(ctx context.Context, org string) ([]App, error) {
	return listAll[App](ctx, c, "list apps of "+org, "/v1/organizations/"+esc(org)+"/apps", nil)
}

// Builds lists every build of an app, newest first.
func (c *Client) Builds(ctx context.Context, org, app string) ([]Build, error) {
	q := url.Values{"sort": {"createdAt:desc"}}
	return listAll[Build](ctx, c, "list builds of "+org+"/"+app,
		"/v1/organizations/"+esc(org)+"/apps/"+esc(app)+"/builds", q)
}

// Build returns one build.
func (c *Client) Build(ctx context.Context, org, app, id string) (*Build, error) {
	var b Build
	err := c.getJSON(ctx, "get build "+org+"/"+app+"/"+id,
		"/v1/organizations/"+esc(org)+"/apps/"+esc(app)+"/builds/"+esc(id), nil, &b)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// DownloadToken is a short-lived, single-use credential for one build file.
// Its String method hides it, so it cannot end up in a log by accident.
type DownloadToken struct {
	value     string
	ExpiresAt time.Time
}

func (t DownloadToken) String() string   { return "(download token)" }
func (t DownloadToken) GoString() string { return "(download token)" }

// MintToken asks for a download token of one build file.
func (c *Client) MintToken(ctx context.Context, org, app, build string, typ DownloadType) (DownloadToken, error) {
	var data struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expiresAt"`
	}
	op := fmt.Sprintf("mint %s token for build %s of %s/%s", typ, build, org, app)
	err := c.getJSON(ctx, op,
		"/v1/organizations/"+esc(org)+"/apps/"+esc(app)+"/builds/"+esc(build)+"/downloadToken",
		url.Values{"type": {string(typ)}}, &data)
	if err != nil {
		return DownloadToken{}, err
	}
	if data.Token == "" {
		return DownloadToken{}, fmt.Errorf("%s: answer has no token", op)
	}
	t := DownloadToken{value: data.Token}
	if data.ExpiresAt != "" {
		if exp, err := time.Parse(time.RFC3339Nano, data.ExpiresAt); err == nil {
			t.ExpiresAt = exp
		}
	}
	return t, nil
}

// ResolveToken spends a download token at the download host and returns
// the storage URL it redirects to. The redirect is not followed here: the
// caller keeps the URL and reads ranges of it until it expires.
func (c *Client) ResolveToken(ctx context.Context, tok DownloadToken) (*url.URL, error) {
	const op = "resolve download token"
	u := withPath(c.downloadURL, "/v1/download/"+esc(tok.value))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	// No Authorization: the token in the path is the credential, and the
	// service-account token must never leave for another host.
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.apiHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusFound, http.StatusMovedPermanently, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		loc := resp.Header.Get("Location")
		if loc == "" {
			return nil, fmt.Errorf("%s: HTTP %d without a Location", op, resp.StatusCode)
		}
		target, err := req.URL.Parse(loc) // a relative Location is relative to the download host
		if err != nil || (target.Scheme != "http" && target.Scheme != "https") {
			return nil, fmt.Errorf("%s: HTTP %d with an unusable Location", op, resp.StatusCode)
		}
		return target, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	// An error page may echo the request path, and with it the token.
	if tok.value != "" {
		body = bytes.ReplaceAll(body, []byte(tok.value), []byte("(download token)"))
	}
	if err := decodeEnvelope(op, resp, body, nil); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s: HTTP %d instead of a redirect", op, resp.StatusCode)
}
