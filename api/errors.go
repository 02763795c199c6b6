package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

// IsNotFound reports whether err says the organization, app, build or file does not exist.
func IsNotFound(err error) bool {
	e, ok := asError(err)
	return ok && (e.StatusCode == http.StatusNotFound || e.Code == CodeNotFound)
}

// IsUnauthorized reports whether the service-account token was missing or rejected.
func IsUnauthorized(err error) bool {
	e, ok := asError(err)
	return ok && (e.Code == CodeNoAuthToken || e.Code == CodeTokenNotValid ||
		(e.StatusCode == http.StatusUnauthorized && e.Code != CodeTokenExpired))
}

// IsForbidden reports whether the token is valid but lacks the permission.
func IsForbidden(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusForbidden
}

// IsNotProcessed reports whether the build cannot be downloaded yet (or ever: failed builds).
func IsNotProcessed(err error) bool {
	e, ok := asError(err)
	return ok && e.Code == CodeNotProcessed
}

// IsTokenExpired reports whether a download token expired before it was used.
func IsTokenExpired(err error) bool {
	e, ok := asError(err)
	return ok && e.Code == CodeTokenExpired
}

// IsThrottled reports whether the host asked us to slow down.
func IsThrottled(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusTooManyRequests
}

// IsServerError reports a 5xx answer: worth retrying.
func IsServerError(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode >= 500 && e.StatusCode <= 599
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
	if _, ok := asError(err); ok {
		return IsServerError(err) || IsThrottled(err)
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

func parseRetryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(h, "%d", &secs); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
