package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// defaultDeadline bounds a read whose context has none: a read always ends,
// in data or in an error, never in a hang.
const defaultDeadline = 60 * time.Second

// maxRemints bounds how often one read may mint a fresh URL because storage
// refused the previous one; more means something else is wrong (a bucket
// policy, a clock skew), and every mint counts against the download quota.
const maxRemints = 3

// Object is one downloadable file of a build, read by byte ranges from
// storage. It mints a download token and resolves it on first use, shares
// the storage URL among all readers until storage says it expired, then
// mints again, transparently. Safe for concurrent use.
type Object struct {
	c     *Client
	org   string
	app   string
	build string
	typ   DownloadType

	size atomic.Int64 // exact size, -1 until known

	mu     sync.Mutex
	loc    *url.URL  // current storage URL; nil until minted or after expiry
	urlSeq uint64    // bumped with every new URL, so stale failures don't drop a fresh one
	etag   string    // first ETag storage gave, to notice changed bytes
	mint   *mintCall // mint in flight, shared by all readers waiting for a URL

	minted atomic.Int64
}

type mintCall struct {
	done chan struct{}
	loc  *url.URL
	seq  uint64
	err  error
}

// Object returns a handle on one build file. size is what the API reported,
// or -1 when it does not say; it is learnt from storage then (see Stat).
func (c *Client) Object(org, app, build string, typ DownloadType, size int64) *Object {
	o := &Object{c: c, org: org, app: app, build: build, typ: typ}
	if size < 0 {
		size = -1
	}
	o.size.Store(size)
	return o
}

func (o *Object) String() string { return fmt.Sprintf("%s/%s/%s (%s)", o.org, o.app, o.build, o.typ) }

// TokensMinted counts the download tokens this object has spent.
func (o *Object) TokensMinted() int64 { return o.minted.Load() }

// Size returns the exact size, or -1 when not known yet.
func (o *Object) Size() int64 { return o.size.Load() }

// Stat returns the object's size, asking storage when the API did not say.
// Asking costs a token, which is then kept for the reads that follow.
func (o *Object) Stat(ctx context.Context) (int64, error) {
	if s := o.size.Load(); s >= 0 {
		return s, nil
	}
	err := o.withURL(ctx, "learn size", func(ctx context.Context, loc *url.URL) error {
		_, err := o.fetch(ctx, loc, make([]byte, 1), 0, nil)
		if err == io.EOF {
			return nil // an empty object: fetch recorded size 0
		}
		return err
	})
	if err != nil {
		return -1, err
	}
	if s := o.size.Load(); s >= 0 {
		return s, nil
	}
	return -1, fmt.Errorf("learn size of %s: storage did not say the object's total size", o)
}

// ReadAt fills p from offset off. It returns fewer bytes only at the end
// of the object (with io.EOF). Expired tokens and URLs are replaced, and
// transient failures retried with backoff, until ctx's deadline.
func (o *Object) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return o.ReadAtProgress(ctx, p, off, nil)
}

// ReadAtProgress is ReadAt that reports, as bytes arrive, how many leading
// bytes of p are final, so a reader waiting for the start of a large range
// need not wait for all of it.
func (o *Object) ReadAtProgress(ctx context.Context, p []byte, off int64, progress func(done int)) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset", o)
	}
	short := false // p reaches past the end: the answer ends with io.EOF
	if size := o.size.Load(); size >= 0 {
		if off >= size {
			return 0, io.EOF
		}
		if rest := size - off; int64(len(p)) > rest {
			p, short = p[:rest], true
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	done := 0
	err := o.withURL(ctx, fmt.Sprintf("read bytes %d-%d", off, off+int64(len(p))-1), func(ctx context.Context, loc *url.URL) error {
		for done < len(p) {
			n, err := o.fetch(ctx, loc, p[done:], off+int64(done), func(n int) {
				if progress != nil {
					progress(done + n)
				}
			})
			done += n // keep what arrived before a cut connection
			if err != nil {
				return err // io.EOF itself, never wrapped: "end of object" is not a failure
			}
			if n == 0 {
				return fmt.Errorf("storage answered bytes=%d- with no bytes", off+int64(done))
			}
		}
		return nil
	})
	if err == nil && (done < len(p) || short) {
		err = io.EOF
	}
	return done, err
}

// withURL runs attempt against the current storage URL until it succeeds,
// fails for good, or the deadline passes.
func (o *Object) withURL(ctx context.Context, what string, attempt func(context.Context, *url.URL) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultDeadline)
		defer cancel()
	}
	start := time.Now()
	var b backoff
	remints := 0
	for {
		loc, seq, err := o.location(ctx)
		if err == nil {
			err = attempt(ctx, loc)
			if err == nil || err == io.EOF {
				return err
			}
			if urlExpired(err) {
				if o.invalidate(seq) { // the first to see it expire
					o.c.noteRemint(ctx, o, ReasonExpiredURL)
				}
				if remints++; remints > maxRemints {
					return fmt.Errorf("%s of %s: storage rejected %d fresh URLs: %w", what, o, maxRemints, err)
				}
				if remints == 1 {
					continue // an expiry is routine: mint again at once
				}
				// Refused again: don't hammer the API.
				if werr := b.wait(ctx, err); werr != nil {
					return o.giveUp(ctx, what, start, werr)
				}
				continue
			}
		}
		if ctx.Err() != nil {
			return o.giveUp(ctx, what, start, err)
		}
		if !Temporary(err) {
			return fmt.Errorf("%s of %s: %w", what, o, err)
		}
		o.c.noteRetry(ctx, what+" of "+o.String(), err)
		if werr := b.wait(ctx, err); werr != nil {
			return o.giveUp(ctx, what, start, werr)
		}
	}
}

func (o *Object) giveUp(ctx context.Context, what string, start time.Time, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s of %s: %w", what, o, context.Canceled)
	}
	return fmt.Errorf("%s of %s: gave up after %s: %w", what, o, time.Since(start).Round(time.Millisecond), err)
}

// location returns the current storage URL, minting one if there is none.
// Concurrent callers share one mint.
func (o *Object) location(ctx context.Context) (*url.URL, uint64, error) {
	o.mu.Lock()
	if o.loc != nil {
		loc, seq := o.loc, o.urlSeq
		o.mu.Unlock()
		return loc, seq, nil
	}
	call := o.mint
	if call == nil {
		call = &mintCall{done: make(chan struct{})}
		o.mint = call
		go o.runMint(call)
	}
	o.mu.Unlock()
	select {
	case <-call.done:
		return call.loc, call.seq, call.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// runMint mints and resolves on a context of its own: one reader giving up
// (Ctrl-C) must not fail the mint the others wait for.
func (o *Object) runMint(call *mintCall) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	loc, err := o.mintURL(ctx)
	o.mu.Lock()
	if err == nil {
		o.urlSeq++
		o.loc = loc
		call.loc, call.seq = loc, o.urlSeq
	}
	call.err = err
	o.mint = nil
	o.mu.Unlock()
	close(call.done)
}

func (o *Object) mintURL(ctx context.Context) (*url.URL, error) {
	for try := 1; ; try++ {
		start := time.Now()
		tok, err := o.c.MintToken(ctx, o.org, o.app, o.build, o.typ)
		if err != nil {
			return nil, err
		}
		o.minted.Add(1)
		o.c.stats.minted.Add(1)
		loc, err := o.c.ResolveToken(ctx, tok)
		// A token that expired (or was spent) before we used it is not the
		// reader's problem: a fresh one is.
		reason := ""
		switch {
		case err == nil:
			o.c.log.DebugContext(ctx, "minted", "file", o.String(), "storage", loc.Host,
				"duration", time.Since(start).Round(time.Millisecond))
			return loc, nil
		case errors.Is(err, ErrTokenExpired):
			reason = ReasonExpiredToken
		case errors.Is(err, ErrNotFound):
			reason = ReasonSpentToken
		}
		if reason == "" || try >= 3 {
			return nil, err
		}
		o.c.noteRemint(ctx, o, reason)
	}
}

// invalidate drops the URL numbered seq, unless a newer one replaced it
// or another reader dropped it already; it reports whether it dropped it.
func (o *Object) invalidate(seq uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.urlSeq == seq && o.loc != nil {
		o.loc = nil
		return true
	}
	return false
}

// fetch reads up to len(p) bytes at off with one Range request. It returns
// how many bytes arrived, so a cut connection resumes where it stopped; a
// storage that serves fewer bytes than asked (a capped range) returns them
// with a nil error, and the end of the object returns io.EOF.
func (o *Object) fetch(ctx context.Context, loc *url.URL, p []byte, off int64, progress func(int)) (int, error) {
	end := off + int64(len(p)) - 1
	op := fmt.Sprintf("storage read of %s", o)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	req.Header.Set("User-Agent", o.c.userAgent)
	resp, err := o.c.storageHTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	defer resp.Body.Close()

	var total int64 = -1
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, last, t, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			return 0, fmt.Errorf("%s: bad Content-Range %q for bytes=%d-%d", op, resp.Header.Get("Content-Range"), off, end)
		}
		total = t
		if last < end {
			p = p[:last-off+1] // a capped range, or the end of the object
		}
	case http.StatusOK:
		// Storage ignored Range: the body is the whole object. Skip to off.
		total = resp.ContentLength
		if off > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
				return 0, fmt.Errorf("%s: skip to %d of a full-body answer: %w", op, off, err)
			}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if _, _, t, ok := parseContentRange(resp.Header.Get("Content-Range")); ok {
			if err := o.checkSize(t); err != nil {
				return 0, fmt.Errorf("%s: %w", op, err)
			}
			if off >= t {
				return 0, io.EOF
			}
		}
		return 0, fmt.Errorf("%s: HTTP 416 for bytes=%d-%d: %w", op, off, end, errPermanent)
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, &Error{Op: op, StatusCode: resp.StatusCode, Message: snippet(body),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	}
	if total >= 0 {
		if err := o.checkSize(total); err != nil {
			return 0, fmt.Errorf("%s: %w", op, err)
		}
		if off >= total {
			return 0, io.EOF
		}
		if rest := total - off; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	atEnd := total >= 0 && off+int64(len(p)) == total && off+int64(len(p)) <= end
	if err := o.checkETag(resp.Header.Get("ETag")); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	n := 0
	for n < len(p) {
		m, err := io.ReadFull(resp.Body, p[n:min(n+progressStep, len(p))])
		n += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("%s: body cut after %d of %d bytes: %w", op, n, len(p), err)
		}
		if progress != nil {
			progress(n)
		}
	}
	if atEnd {
		return n, io.EOF
	}
	return n, nil
}

// progressStep is how often a body read reports progress: small enough that
// a reader waiting for its first 4 KiB does not wait for a whole block.
const progressStep = 128 << 10

// checkSize compares storage's total size with what the API said, or
// learns it when the API said nothing.
func (o *Object) checkSize(total int64) error {
	if total < 0 {
		return nil
	}
	if o.size.CompareAndSwap(-1, total) {
		return nil
	}
	if want := o.size.Load(); want != total {
		return fmt.Errorf("storage has %d bytes, the API says %d: %w", total, want, ErrSizeMismatch)
	}
	return nil
}

func (o *Object) checkETag(etag string) error {
	etag = strings.TrimPrefix(strings.TrimSpace(etag), "W/")
	if etag == "" {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.etag == "" {
		o.etag = etag
		return nil
	}
	if o.etag != etag {
		return ErrObjectChanged
	}
	return nil
}

// parseContentRange parses "bytes a-b/total" (total may be "*": -1) and
// the 416 form "bytes */total" (start and end -1), whose total is required.
func parseContentRange(h string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(h), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t < 0 {
			return 0, 0, 0, false
		}
		total = t
	}
	if rng == "*" {
		// "bytes */*" says nothing; the caller would take total -1 for
		// "past the end" and end the file early.
		if total < 0 {
			return 0, 0, 0, false
		}
		return -1, -1, total, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || (total >= 0 && end >= total) {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// urlExpired reports whether storage refused the URL as expired or no
// longer valid (S3 and GCS say 403, others 401 or 410, some 400 "expired").
func urlExpired(err error) bool {
	e, ok := asError(err)
	if !ok {
		return false
	}
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusGone:
		return true
	case http.StatusBadRequest:
		return strings.Contains(strings.ToLower(e.Message), "expired")
	}
	return false
}

// maxRetryAfter is the longest Retry-After worth waiting for.
const maxRetryAfter = 30 * time.Second

// Backoff steps: the first is short because most blips are, and the cap
// keeps a long outage polled rather than abandoned between tries.
const (
	backoffFirst = 100 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// backoff is exponential with jitter, and honours Retry-After. The zero
// value is ready to use.
type backoff struct{ next time.Duration }

// delay returns how long to wait before the next try, and false when the
// host asked for longer than maxRetryAfter: a host asking for minutes is
// down, not busy. Each call grows the step, up to backoffMax.
func (b *backoff) delay(cause error) (time.Duration, bool) {
	if b.next == 0 {
		b.next = backoffFirst
	}
	// Jitter spreads readers that failed together; the floor keeps a try
	// from following the last one at once.
	d := time.Duration(rand.Int64N(int64(b.next))) + b.next/4
	b.next = min(2*b.next, backoffMax)
	if ra, ok := RetryAfter(cause); ok && ra > d {
		if ra > maxRetryAfter {
			return 0, false
		}
		d = ra
	}
	return d, true
}

// wait sleeps for the next delay. It returns cause, not a context error,
// when it will not or cannot wait: the caller reports what went wrong, not
// that it stopped.
func (b *backoff) wait(ctx context.Context, cause error) error {
	d, ok := b.delay(cause)
	if !ok {
		return cause
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return cause // waiting would pass the deadline: fail now, not later
	}
	select {
	case <-time.After(d): // collected once it fires or is dropped (Go 1.23)
		return nil
	case <-ctx.Done():
		return cause
	}
}
