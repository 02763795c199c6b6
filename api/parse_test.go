package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		name              string
		in                string
		start, end, total int64
		ok                bool
	}{
		{"range of a known total", "bytes 0-99/1000", 0, 99, 1000, true},
		{"last byte", "bytes 999-999/1000", 999, 999, 1000, true},
		{"one-byte object", "bytes 0-0/1", 0, 0, 1, true},
		{"unknown total", "bytes 100-199/*", 100, 199, -1, true},
		{"surrounding space", "  bytes 5-9/10\t", 5, 9, 10, true},
		{"416 form", "bytes */1000", -1, -1, 1000, true},
		{"416 form of an empty object", "bytes */0", -1, -1, 0, true},
		{"large offsets", "bytes 4294967296-4294967395/8589934592", 4294967296, 4294967395, 8589934592, true},

		{"empty", "", 0, 0, 0, false},
		{"no unit", "0-99/1000", 0, 0, 0, false},
		{"other unit", "items 0-99/1000", 0, 0, 0, false},
		{"unit without space", "bytes0-99/1000", 0, 0, 0, false},
		{"no total", "bytes 0-99", 0, 0, 0, false},
		{"empty total", "bytes 0-99/", 0, 0, 0, false},
		{"negative total", "bytes 0-99/-1", 0, 0, 0, false},
		{"total not a number", "bytes 0-99/lots", 0, 0, 0, false},
		{"two slashes", "bytes 0-99/100/100", 0, 0, 0, false},
		{"no dash", "bytes 99/1000", 0, 0, 0, false},
		{"open end", "bytes 0-/1000", 0, 0, 0, false},
		{"suffix form", "bytes -500/1000", 0, 0, 0, false},
		{"end before start", "bytes 10-5/1000", 0, 0, 0, false},
		{"end at total", "bytes 0-1000/1000", 0, 0, 0, false},
		{"range of an empty object", "bytes 0-0/0", 0, 0, 0, false},
		{"start overflows", "bytes 99999999999999999999-1/*", 0, 0, 0, false},
		{"space inside", "bytes 0 - 99/1000", 0, 0, 0, false},
		// Neither range nor total: nothing to learn, and the 416 handler
		// would take total -1 as "the offset is past the end".
		{"416 form without total", "bytes */*", 0, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start, end, total, ok := parseContentRange(tc.in)
			if ok != tc.ok || (ok && (start != tc.start || end != tc.end || total != tc.total)) {
				t.Errorf("parseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d, %v",
					tc.in, start, end, total, ok, tc.start, tc.end, tc.total, tc.ok)
			}
		})
	}
}

func TestURLExpired(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"401", &Error{StatusCode: 401}, true},
		{"403 as S3 and GCS say it", &Error{StatusCode: 403, Message: "Request has expired"}, true},
		{"403 without a message", &Error{StatusCode: 403}, true},
		{"410", &Error{StatusCode: 410}, true},
		{"400 expired", &Error{StatusCode: 400, Message: `"<Code>ExpiredToken</Code>"`}, true},
		{"400 expired in capitals", &Error{StatusCode: 400, Message: "URL EXPIRED"}, true},
		{"wrapped 403", fmt.Errorf("storage read: %w", &Error{StatusCode: 403}), true},

		{"400 for another reason", &Error{StatusCode: 400, Message: "InvalidRange"}, false},
		{"400 without a message", &Error{StatusCode: 400}, false},
		{"404", &Error{StatusCode: 404}, false},
		{"429", &Error{StatusCode: 429}, false},
		{"503", &Error{StatusCode: 503, Message: "expired"}, false},
		{"envelope failure", &Error{Code: CodeTokenExpired}, false},
		{"not an *Error", errors.New("HTTP 403: expired"), false},
		{"transport failure", io.ErrUnexpectedEOF, false},
		{"nil", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := urlExpired(tc.err); got != tc.want {
				t.Errorf("urlExpired(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		in   string
		// want, or for dates the lower bound; slack allows for the time
		// between formatting the date and parsing it, and its rounding
		// to whole seconds.
		want, slack time.Duration
	}{
		{"seconds", "7", 7 * time.Second, 0},
		{"zero", "0", 0, 0},
		{"spaces", " 120 ", 120 * time.Second, 0},
		{"leading zeros", "007", 7 * time.Second, 0},
		{"a day", "86400", 24 * time.Hour, 0},
		{"IMF-fixdate", now.Add(90 * time.Second).UTC().Format(http.TimeFormat), 89 * time.Second, 2 * time.Second},
		{"RFC 850 date", now.Add(90 * time.Second).UTC().Format(time.RFC850), 89 * time.Second, 2 * time.Second},
		{"asctime date", now.Add(90 * time.Second).UTC().Format(time.ANSIC), 89 * time.Second, 2 * time.Second},
		// Too long for a Duration: clamped, not wrapped around to a
		// short wait (18446744074s is 2^64ns plus 0.29s).
		{"seconds overflowing a Duration", "18446744074", maxDuration, 0},
		{"seconds overflowing an int64", "99999999999999999999999", maxDuration, 0},

		{"empty", "", 0, 0},
		{"blank", "  ", 0, 0},
		{"negative", "-5", 0, 0},
		{"plus sign", "+5", 0, 0},
		{"fraction", "1.5", 0, 0},
		{"trailing junk", "7s", 0, 0},
		{"words", "soon", 0, 0},
		{"date in the past", now.Add(-time.Hour).UTC().Format(http.TimeFormat), 0, 0},
		{"date not in GMT", now.Add(90 * time.Second).Format("Mon, 02 Jan 2006 15:04:05 -0700"), 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseRetryAfter(tc.in)
			if got < tc.want || got > tc.want+tc.slack {
				t.Errorf("parseRetryAfter(%q) = %v, want %v (+%v)", tc.in, got, tc.want, tc.slack)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	sentinels := []error{ErrNotFound, ErrUnauthorized, ErrForbidden, ErrNotProcessed, ErrTokenExpired, ErrThrottled, ErrServerError}
	cases := []struct {
		name      string
		err       error
		want      []error // the sentinels err matches; every other one must not
		temporary bool
	}{
		{"404", &Error{StatusCode: 404}, []error{ErrNotFound}, false},
		{"code 3001 on a 400", &Error{StatusCode: 400, Code: CodeNotFound}, []error{ErrNotFound}, false},
		{"code 3001 in a 2xx envelope", &Error{Code: CodeNotFound}, []error{ErrNotFound}, false},
		{"401", &Error{StatusCode: 401}, []error{ErrUnauthorized}, false},
		{"401 code 2001", &Error{StatusCode: 401, Code: CodeTokenNotValid}, []error{ErrUnauthorized}, false},
		{"401 code 4002", &Error{StatusCode: 401, Code: CodeNoAuthToken}, []error{ErrUnauthorized}, false},
		{"code 4002 on a 400", &Error{StatusCode: 400, Code: CodeNoAuthToken}, []error{ErrUnauthorized}, false},
		{"code 2001 in a 2xx envelope", &Error{Code: CodeTokenNotValid}, []error{ErrUnauthorized}, false},
		{"401 code 4005 is expired, not unauthorized", &Error{StatusCode: 401, Code: CodeTokenExpired}, []error{ErrTokenExpired}, false},
		{"code 4005 on a 400", &Error{StatusCode: 400, Code: CodeTokenExpired}, []error{ErrTokenExpired}, false},
		{"403", &Error{StatusCode: 403}, []error{ErrForbidden}, false},
		{"403 code 4002 is both", &Error{StatusCode: 403, Code: CodeNoAuthToken}, []error{ErrForbidden, ErrUnauthorized}, false},
		{"code 5014 on a 400", &Error{StatusCode: 400, Code: CodeNotProcessed}, []error{ErrNotProcessed}, false},
		{"code 5014 in a 2xx envelope", &Error{Code: CodeNotProcessed}, []error{ErrNotProcessed}, false},
		{"404 code 5014 is both", &Error{StatusCode: 404, Code: CodeNotProcessed}, []error{ErrNotFound, ErrNotProcessed}, false},
		{"429", &Error{StatusCode: 429, Code: 429}, []error{ErrThrottled}, true},
		{"500", &Error{StatusCode: 500}, []error{ErrServerError}, true},
		{"503", &Error{StatusCode: 503, Code: 503}, []error{ErrServerError}, true},
		{"599", &Error{StatusCode: 599}, []error{ErrServerError}, true},
		{"503 code 3001 is both", &Error{StatusCode: 503, Code: CodeNotFound}, []error{ErrNotFound, ErrServerError}, true},
		{"wrapped 404", fmt.Errorf("list apps: %w", &Error{StatusCode: 404}), []error{ErrNotFound}, false},
		{"wrapped twice 503", fmt.Errorf("read: %w", fmt.Errorf("fetch: %w", &Error{StatusCode: 503})), []error{ErrServerError}, true},
		{"joined 429", errors.Join(errors.New("first"), &Error{StatusCode: 429}), []error{ErrThrottled}, true},
		{"bare sentinel", ErrServerError, []error{ErrServerError}, true},
		{"wrapped sentinel", fmt.Errorf("lookup: %w", ErrNotFound), []error{ErrNotFound}, false},

		{"400", &Error{StatusCode: 400}, nil, false},
		{"400 code 5003", &Error{StatusCode: 400, Code: CodeLimitsExceeded}, nil, false},
		{"410", &Error{StatusCode: 410}, nil, false},
		{"499", &Error{StatusCode: 499}, nil, false},
		{"600", &Error{StatusCode: 600}, nil, false},
		{"failure envelope without a code", &Error{}, nil, false},
		{"same text, not the sentinel", errors.New("not found"), nil, false},
		{"nil", nil, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range sentinels {
				want := false
				for _, w := range tc.want {
					want = want || w == s
				}
				if got := errors.Is(tc.err, s); got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tc.err, s, got, want)
				}
			}
			if got := Temporary(tc.err); got != tc.temporary {
				t.Errorf("Temporary(%v) = %v, want %v", tc.err, got, tc.temporary)
			}
		})
	}
}

// Sentinels are distinct from each other and from the permanent failures:
// an *Error never matches those.
func TestSentinelsDistinct(t *testing.T) {
	all := []error{ErrNotFound, ErrUnauthorized, ErrForbidden, ErrNotProcessed, ErrTokenExpired,
		ErrThrottled, ErrServerError, ErrSizeMismatch, ErrObjectChanged}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v)", a, b)
			}
		}
	}
	e := &Error{StatusCode: 404, Code: CodeNotFound}
	if errors.Is(e, ErrSizeMismatch) || errors.Is(e, ErrObjectChanged) || errors.Is(e, errPermanent) {
		t.Error("an *Error matches a permanent failure")
	}
}

func TestBackoffGrowth(t *testing.T) {
	var b backoff
	step := backoffFirst
	for i := range 12 {
		d, ok := b.delay(errors.New("cause"))
		if !ok {
			t.Fatalf("try %d: delay gave up without a Retry-After", i)
		}
		// The jitter is uniform over [step/4, step+step/4).
		if d < step/4 || d >= step+step/4 {
			t.Errorf("try %d: delay %v outside [%v, %v)", i, d, step/4, step+step/4)
		}
		step = min(2*step, backoffMax)
		if b.next != step {
			t.Errorf("try %d: next step %v, want %v", i, b.next, step)
		}
	}
	if b.next != backoffMax {
		t.Errorf("after many tries the step is %v, want the cap %v", b.next, backoffMax)
	}
}

// Every draw at one step falls in its band: the jitter neither vanishes
// nor exceeds the step.
func TestBackoffJitterBounds(t *testing.T) {
	for _, step := range []time.Duration{backoffFirst, backoffMax} {
		lo, hi := step, time.Duration(0)
		for range 1000 {
			b := backoff{next: step}
			d, _ := b.delay(nil)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < step/4 || hi >= step+step/4 {
			t.Errorf("step %v: delays in [%v, %v], want within [%v, %v)", step, lo, hi, step/4, step+step/4)
		}
		if hi-lo < step/2 {
			t.Errorf("step %v: 1000 delays span only %v: no jitter", step, hi-lo)
		}
	}
}

func TestBackoffRetryAfter(t *testing.T) {
	throttled := func(ra time.Duration) error { return &Error{StatusCode: 429, RetryAfter: ra} }
	cases := []struct {
		name     string
		next     time.Duration
		cause    error
		min, max time.Duration // bounds of the delay
		giveUp   bool
	}{
		{"longer than the step is honoured", 0, throttled(2 * time.Second), 2 * time.Second, 2 * time.Second, false},
		{"wrapped is honoured", 0, fmt.Errorf("list: %w", throttled(3*time.Second)), 3 * time.Second, 3 * time.Second, false},
		{"the longest honoured", 0, throttled(maxRetryAfter), maxRetryAfter, maxRetryAfter, false},
		{"shorter than the step is not", backoffMax, throttled(time.Millisecond), backoffMax / 4, backoffMax + backoffMax/4, false},
		{"on a 503 too", 0, &Error{StatusCode: 503, RetryAfter: time.Second}, time.Second, time.Second, false},
		{"absent", 0, throttled(0), backoffFirst / 4, backoffFirst + backoffFirst/4, false},
		{"longer than maxRetryAfter gives up", 0, throttled(maxRetryAfter + time.Second), 0, 0, true},
		{"clamped overflow gives up", 0, throttled(parseRetryAfter("18446744074")), 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := backoff{next: tc.next}
			d, ok := b.delay(tc.cause)
			if ok == tc.giveUp {
				t.Fatalf("delay = %v, %v; want give up %v", d, ok, tc.giveUp)
			}
			if ok && (d < tc.min || d > tc.max) {
				t.Errorf("delay = %v, want in [%v, %v]", d, tc.min, tc.max)
			}
			if tc.giveUp {
				start := time.Now()
				if err := b.wait(context.Background(), tc.cause); err != tc.cause {
					t.Errorf("wait = %v, want the cause %v", err, tc.cause)
				}
				if el := time.Since(start); el > time.Second {
					t.Errorf("wait took %v before giving up", el)
				}
			}
		})
	}
}

func TestBackoffWait(t *testing.T) {
	cause := errors.New("cause")
	background := func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }
	cases := []struct {
		name string
		next time.Duration // the step: delays are at least a quarter of it
		ctx  func() (context.Context, context.CancelFunc)
		// cause is what wait is given; a nil cause stands for the plain
		// error above. wait must return nil when it slept, cause when not.
		cause            error
		slept            bool
		minWait, maxWait time.Duration
	}{
		{"waits the delay", 40 * time.Millisecond, background,
			nil, true, 10 * time.Millisecond, 5 * time.Second},
		{"waits the Retry-After", 4 * time.Millisecond, background,
			&Error{StatusCode: 429, RetryAfter: 150 * time.Millisecond}, true, 150 * time.Millisecond, 5 * time.Second},
		{"cancelled before", time.Hour, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, nil, false, 0, time.Second},
		{"cancelled while waiting", time.Hour, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, nil, false, 20 * time.Millisecond, 2 * time.Second},
		// A wait that would outlast the deadline gives up at once rather
		// than sleep until the deadline and fail anyway.
		{"deadline shorter than the delay", time.Hour, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Minute)
		}, nil, false, 0, time.Second},
		{"deadline shorter than the Retry-After", 4 * time.Millisecond, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 500*time.Millisecond)
		}, &Error{StatusCode: 429, RetryAfter: 10 * time.Second}, false, 0, 250 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cause == nil {
				tc.cause = cause
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			b := backoff{next: tc.next}
			start := time.Now()
			err := b.wait(ctx, tc.cause)
			el := time.Since(start)
			if tc.slept && err != nil {
				t.Errorf("wait = %v, want nil", err)
			}
			if !tc.slept && err != tc.cause {
				t.Errorf("wait = %v, want the cause %v", err, tc.cause)
			}
			if el < tc.minWait || el > tc.maxWait {
				t.Errorf("wait took %v, want within [%v, %v]", el, tc.minWait, tc.maxWait)
			}
		})
	}
}
