package api

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
)

// Stats counts what a Client did since it was made: for metrics, the
// status file and logs.
type Stats struct {
	TokensMinted int64
	// Re-mints, by what made the previous URL or token unusable.
	RemintsExpiredURL   int64 // storage refused the URL (401, 403, 410, 400 "expired")
	RemintsExpiredToken int64 // the token expired before it was spent (4005)
	RemintsSpentToken   int64 // the token was already spent (404 at the download host)
	// Retries after a temporary failure, by cause.
	RetriesServerError int64 // 5xx
	RetriesThrottled   int64 // 429
	RetriesCut         int64 // a connection refused, reset or cut mid-body
}

// Re-mint reasons, as logs and metrics name them.
const (
	ReasonExpiredURL   = "expired URL"
	ReasonExpiredToken = "expired token"
	ReasonSpentToken   = "spent token"
)

// Retry causes, as logs and metrics name them.
const (
	CauseServerError = "5xx"
	CauseThrottled   = "429"
	CauseCut         = "cut connection"
)

type stats struct {
	minted                                   atomic.Int64
	remintURL, remintExpired, remintSpent    atomic.Int64
	retryServer, retryThrottled, retryBroken atomic.Int64
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		TokensMinted:        s.minted.Load(),
		RemintsExpiredURL:   s.remintURL.Load(),
		RemintsExpiredToken: s.remintExpired.Load(),
		RemintsSpentToken:   s.remintSpent.Load(),
		RetriesServerError:  s.retryServer.Load(),
		RetriesThrottled:    s.retryThrottled.Load(),
		RetriesCut:          s.retryBroken.Load(),
	}
}

// noteRemint counts and logs a re-mint. what names the file.
func (c *Client) noteRemint(ctx context.Context, what stringer, reason string) {
	switch reason {
	case ReasonExpiredURL:
		c.stats.remintURL.Add(1)
	case ReasonExpiredToken:
		c.stats.remintExpired.Add(1)
	case ReasonSpentToken:
		c.stats.remintSpent.Add(1)
	}
	c.log.DebugContext(ctx, "re-mint", "file", what.String(), "reason", reason)
}

// noteRetry counts and logs a retry after err, a temporary failure.
func (c *Client) noteRetry(ctx context.Context, op string, err error) {
	cause := CauseCut
	switch {
	case errors.Is(err, ErrServerError):
		cause = CauseServerError
		c.stats.retryServer.Add(1)
	case errors.Is(err, ErrThrottled):
		cause = CauseThrottled
		c.stats.retryThrottled.Add(1)
	default:
		c.stats.retryBroken.Add(1)
	}
	attrs := []any{"op", op, "cause", cause}
	if e, ok := asError(err); ok {
		attrs = append(attrs, "status", e.StatusCode, "code", e.Code)
	}
	c.log.DebugContext(ctx, "retry", attrs...)
}

// stringer is what logs name a file by.
type stringer interface{ String() string }

// discard is the logger of a Client given none.
var discard = slog.New(slog.DiscardHandler)
