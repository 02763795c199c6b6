package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Applivery error codes the client reacts to (see shared/applivery-api.md §4).
const (
	CodeTokenNotValid  = 2001
	CodeNotFound       = 3001
	CodeNoAuthToken    = 4002
	CodeTokenExpired   = 4005
	CodeNotProcessed   = 5014
	CodeLimitsExceeded = 5003
)

// Error is a failed exchange with an Applivery host: the HTTP status, and the
// Applivery error code and message when the body carried an error envelope.
type Error struct {
	Op         string        // what was attempted, e.g. "list builds of acme/field-app"
	StatusCode int           // HTTP status; 0 when the envelope said failure on a 2xx
	Code       int           // Applivery error code; 0 when none was given
	Message    string        // Applivery message, or the start of a non-JSON body
	RetryAfter time.Duration // from a Retry-After header, 0 when absent
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
	} else {
		b.WriteString("failure envelope")
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ", Applivery code %d", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Sentinels that classify an *Error; test with errors.Is, which sees
// through wrapping. An *Error may match more than one (a 404 carrying code
// 5014 is both not found and not processed), and a bare sentinel may also be
// returned or wrapped by callers that need to say the same thing.
var (
	// ErrNotFound: the organization, app, build or file does not exist.
	// Matches HTTP 404 or Applivery code 3001, whatever the status.
	ErrNotFound = errors.New("not found")

	// ErrUnauthorized: the service-account token was missing or rejected.
	// Matches code 4002 or 2001, or HTTP 401 unless the code is 4005: that
	// is an expired download token, which minting another one cures, not a
	// fault of the service-account token.
	ErrUnauthorized = errors.New("unauthorized")

	// ErrForbidden: the token is valid but lacks the permission.
	// Matches HTTP 403.
	ErrForbidden = errors.New("forbidden")

	// ErrNotProcessed: the build cannot be downloaded yet, or ever (a failed
	// build). Matches code 5014.
	ErrNotProcessed = errors.New("build not processed")

	// ErrTokenExpired: a download token expired before it was used.
	// Matches code 4005.
	ErrTokenExpired = errors.New("download token expired")

	// ErrThrottled: the host asked us to slow down. Matches HTTP 429.
	ErrThrottled = errors.New("throttled")

	// ErrServerError: the host failed; worth retrying. Matches HTTP 5xx.
	ErrServerError = errors.New("server error")
)

// Is lets errors.Is classify e by the sentinels above.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || e.Code == CodeNotFound
	case ErrUnauthorized:
		return e.Code == CodeNoAuthToken || e.Code == CodeTokenNotValid ||
			(e.StatusCode == http.StatusUnauthorized && e.Code != CodeTokenExpired)
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotProcessed:
		return e.Code == CodeNotProcessed
	case ErrTokenExpired:
		return e.Code == CodeTokenExpired
	case ErrThrottled:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrServerError:
		return e.StatusCode >= 500 && e.StatusCode <= 599
	}
	return false
}

// RetryAfter returns the delay a host asked for, if any.
func RetryAfter(err error) (time.Duration, bool) {
	e, ok := asError(err)
	if !ok || e.RetryAfter <= 0 {
		return 0, false
	}
	return e.RetryAfter, true
}

// Temporary reports whether retrying the same request later may succeed:
// a 5xx or 429 answer, or a transport failure (refused, reset, cut
// mid-body, timed out). An answer that could not be understood, or a
// caller that gave up, is not temporary.
func Temporary(err error) bool {
	if errors.Is(err, ErrServerError) || errors.Is(err, ErrThrottled) {
		return true
	}
	if _, ok := asError(err); ok {
		return false // any other answer would only be given again
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errPermanent) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// errPermanent marks failures that no retry can mend.
var errPermanent = errors.New("permanent failure")

// ErrSizeMismatch means storage serves an object whose size differs from
// what the API reported: serving it would truncate or pad the file.
var ErrSizeMismatch = fmt.Errorf("storage object size differs from the size the API reported: %w", errPermanent)

// ErrObjectChanged means a build's bytes changed between two storage URLs
// (a different ETag), which an immutable build must never do.
var ErrObjectChanged = fmt.Errorf("storage object changed (ETag differs): %w", errPermanent)

// maxDuration is the longest time.Duration.
const maxDuration = time.Duration(1<<63 - 1)

// parseRetryAfter reads a Retry-After header, delay-seconds or an HTTP-date,
// and returns 0 when it is absent, in the past or not understood: a guess
// at a malformed value ("1.5", "7s") is no better than our own backoff.
func parseRetryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	// Digits only, as RFC 9110 says (no sign). Checked first: ParseUint
	// reports an overflow before it looks at the rest ("99999999999999999999x").
	if strings.Trim(h, "0123456789") == "" {
		// Only an overflow fails now, and a value past uint64 is still a
		// valid, enormous delay. Clamp before multiplying: an overflow could
		// wrap a host's "come back in centuries" into a fraction of a second.
		secs, err := strconv.ParseUint(h, 10, 64)
		if err != nil || secs > uint64(maxDuration/time.Second) {
			return maxDuration
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
