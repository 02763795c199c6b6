// Package emulator is an in-process emulator of the Applivery Workspace API,
// faithful enough to run appliveryfs against it in tests, benchmarks and
// demos.
//
// A Server listens on three loopback ports, one per real Applivery host:
//
//   - the API host (api.applivery.io): organizations, apps, builds and
//     download tokens, behind a service-account bearer token;
//   - the download host (download-api.applivery.io): trades a single-use
//     download token for a 302 redirect to a signed storage URL;
//   - a storage host standing in for the object store behind those URLs:
//     signed, expiring URLs serving the bytes with ETag and Range support.
//
// Where the public documentation is silent (see the "Unknowns" list of
// the API reference), the emulator follows the suggested choices there.
// Knobs on Server inject latency, bandwidth limits and faults at any time.
package emulator

import (
	"context"
	"crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultToken is the service-account token a Server accepts when
// Options.Token is empty.
const DefaultToken = "emulator-service-account-token"

const (
	defaultTokenTTL = 5 * time.Minute
	defaultURLTTL   = 15 * time.Minute
)

// Options configure Start.
type Options struct {
	Token string   // accepted service-account bearer token; "" => DefaultToken
	Data  *Dataset // nil => SampleData()
	Addr  string   // host to listen on; "" => "127.0.0.1". Must be a loopback host; each server gets its own port.
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	token   string
	data    *Dataset
	signKey []byte // HMAC key of the signed storage URLs, random per server

	apiURL, downloadURL, storageURL string

	servers   []*http.Server
	serving   sync.WaitGroup
	done      chan struct{} // closed by Close; ends sleeps in handlers
	closeOnce sync.Once

	// Knobs. Durations are stored as int64 nanoseconds.
	tokenTTL  atomic.Int64
	urlTTL    atomic.Int64
	latency   atomic.Int64
	bandwidth atomic.Int64

	faultMu sync.Mutex
	faults  Faults

	tokens    tokenStore
	secrets   secretLog
	stats     stats
	digests   digestCache
	manifests manifestCache
}

// Start serves three hosts on loopback ports: the API host, the download
// host and a storage host. Close releases them.
func Start(opts Options) (*Server, error) {
	host := opts.Addr
	if host == "" {
		host = "127.0.0.1"
	}
	if err := checkLoopback(host); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("emulator: signing key: %w", err)
	}
	s := &Server{
		token:   opts.Token,
		data:    opts.Data,
		signKey: key,
		done:    make(chan struct{}),
	}
	if s.token == "" {
		s.token = DefaultToken
	}
	if s.data == nil {
		s.data = SampleData()
	}
	s.tokenTTL.Store(int64(defaultTokenTTL))
	s.urlTTL.Store(int64(defaultURLTTL))

	hosts := []struct {
		url     *string
		handler http.HandlerFunc
	}{
		{&s.apiURL, s.serveAPI},
		{&s.downloadURL, s.serveDownload},
		{&s.storageURL, s.serveStorage},
	}
	// Listen on all three before serving any: handlers read the URLs.
	listeners := make([]net.Listener, len(hosts))
	for i, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			for _, l := range listeners[:i] {
				l.Close()
			}
			return nil, fmt.Errorf("emulator: %w", err)
		}
		listeners[i] = ln
		*h.url = "http://" + ln.Addr().String()
	}
	for i, h := range hosts {
		srv := &http.Server{Handler: h.handler, ReadHeaderTimeout: 10 * time.Second}
		s.servers = append(s.servers, srv)
		s.serving.Add(1)
		ln := listeners[i]
		go func() {
			defer s.serving.Done()
			srv.Serve(ln) // always returns ErrServerClosed after Close
		}()
	}
	return s, nil
}

// checkLoopback refuses hosts that would expose the emulator beyond this
// machine: it has no real security, and Addr carries no port because
// each of the three servers picks its own.
func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("emulator: Addr %q is not a loopback host", host)
}

// Close stops the three servers and drops their connections.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		for _, srv := range s.servers {
			srv.Close()
		}
		s.serving.Wait()
	})
}

// APIURL returns the base URL of the API host, without a trailing slash.
func (s *Server) APIURL() string { return s.apiURL }

// DownloadURL returns the base URL of the download host.
func (s *Server) DownloadURL() string { return s.downloadURL }

// StorageURL returns the base URL of the storage host.
func (s *Server) StorageURL() string { return s.storageURL }

// Token returns the accepted service-account token.
func (s *Server) Token() string { return s.token }

// Data returns the served dataset. Use Dataset.AddBuild, MutateObject and
// Object to change or read it while the server runs.
func (s *Server) Data() *Dataset { return s.data }

// SetTokenTTL sets the lifetime of download tokens minted from now on
// (default 5 minutes). A TTL <= 0 mints tokens that are already expired.
func (s *Server) SetTokenTTL(d time.Duration) { s.tokenTTL.Store(int64(d)) }

// SetURLTTL sets the lifetime of signed storage URLs issued from now on
// (default 15 minutes). Expiry has one-second resolution, rounded up.
func (s *Server) SetURLTTL(d time.Duration) { s.urlTTL.Store(int64(d)) }

// SetLatency adds d before the first byte of every response of all three
// hosts (time to first byte).
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetBandwidth caps the body bytes per second of each storage response;
// 0 means unlimited. Responses in flight follow a new cap from their next
// chunk on.
func (s *Server) SetBandwidth(bytesPerSec int64) { s.bandwidth.Store(max(bytesPerSec, 0)) }

// Faults describe failures to inject. Counted faults switch themselves
// off (their status or cut size returns to zero) once used up, so
// Server.Faults shows what is left. Rate faults never switch off: each
// request fails independently with the given probability, which is how
// a flaky network or an overloaded store misbehaves over hours. Where
// both kinds are set, a counted fault comes first.
type Faults struct {
	APIStatus     int           // non-zero: API requests answer this HTTP status with an error envelope
	APIRetryAfter time.Duration // with APIStatus: Retry-After header in whole seconds, rounded up
	APICount      int           // how many API requests fail; 0 = every request while set
	APIDown       bool          // API and download hosts close connections without answering
	StorageStatus int           // non-zero: storage answers this status
	StorageCount  int           // how many storage requests fail that way; 0 = all while set
	CutAfter      int64         // >0: storage drops the connection after this many body bytes
	CutCount      int           // how many storage responses are cut; 0 = all while set
	IgnoreRange   bool          // storage ignores Range and answers 200 with the whole object
	APIRate       float64       // 0-1: each API request answers 503, without Retry-After, with this probability
	StorageRate   float64       // 0-1: each storage GET fails with this probability: half answer 503, half are cut at a random point of the body
	Seed          uint64        // seeds the draws of the rates, so that a run can be repeated; 0 is a seed like any other

	// rng draws the rate faults. SetFaults with a Faults whose rng is nil
	// (any literal) starts a new sequence from Seed; one returned by
	// Server.Faults carries the running sequence on.
	rng *mathrand.Rand
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = f
	s.faultMu.Unlock()
}

// Faults returns the faults still in effect.
func (s *Server) Faults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults
}

// takeAPIFault reports whether this API request must fail and with what
// status, using up one of Faults.APICount or drawing against
// Faults.APIRate.
func (s *Server) takeAPIFault() (status int, retryAfter time.Duration, ok bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := &s.faults
	if f.APIStatus == 0 {
		if f.hit(f.APIRate) {
			return http.StatusServiceUnavailable, 0, true
		}
		return 0, 0, false
	}
	status, retryAfter = f.APIStatus, f.APIRetryAfter
	if f.APICount > 0 {
		f.APICount--
		if f.APICount == 0 {
			f.APIStatus, f.APIRetryAfter = 0, 0
		}
	}
	return validStatus(status), retryAfter, true
}

// takeStorageFault returns the status this storage request must fail
// with, or 0, using up one of Faults.StorageCount or drawing against
// half of Faults.StorageRate (takeCut draws the other half).
func (s *Server) takeStorageFault() int {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := &s.faults
	status := f.StorageStatus
	if status != 0 && f.StorageCount > 0 {
		f.StorageCount--
		if f.StorageCount == 0 {
			f.StorageStatus = 0
		}
	}
	if status == 0 {
		if f.hit(f.StorageRate / 2) {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	return validStatus(status)
}

// takeCut reports after how many bytes a storage body of bodyLen bytes
// must be cut. A body no longer than CutAfter is not cut, and does not
// use up one of CutCount. Under Faults.StorageRate an empty body is
// never cut and any other may be, at a random byte before its end.
func (s *Server) takeCut(bodyLen int64) (int64, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := &s.faults
	if f.CutAfter <= 0 || bodyLen <= f.CutAfter {
		// Only requests that got past takeStorageFault get here, so the
		// cut's chance is conditional on that: the two halves then add
		// up to StorageRate per request.
		if half := f.StorageRate / 2; bodyLen > 0 && half < 1 && f.hit(half/(1-half)) {
			return f.rng.Int64N(bodyLen), true
		}
		return 0, false
	}
	n := f.CutAfter
	if f.CutCount > 0 {
		f.CutCount--
		if f.CutCount == 0 {
			f.CutAfter = 0
		}
	}
	return n, true
}

// hit draws one rate fault: it reports true with probability p. The
// caller holds faultMu.
func (f *Faults) hit(p float64) bool {
	if p <= 0 {
		return false
	}
	if f.rng == nil {
		f.rng = mathrand.New(mathrand.NewPCG(f.Seed, 0x736f616b)) // the second word only has to be fixed
	}
	return f.rng.Float64() < p
}

// validStatus keeps a mistyped fault status from panicking net/http,
// which rejects codes outside 100-999.
func validStatus(code int) int {
	if code < 100 || code > 999 {
		return http.StatusInternalServerError
	}
	return code
}

// dropIfDown closes the connection without an answer when Faults.APIDown
// is set, so clients see the host as unreachable.
func (s *Server) dropIfDown(w http.ResponseWriter) bool {
	if !s.Faults().APIDown {
		return false
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable: aborting the handler also drops the connection.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
	return true
}

// delay waits out the configured latency. It reports false if the client
// went away or the server closed meanwhile.
func (s *Server) delay(r *http.Request) bool {
	return Sleep(r.Context(), time.Duration(s.latency.Load()), s.done)
}

// Sleep waits d and reports true, or reports false as soon as ctx is done
// or stop is closed; a nil stop never closes. A d <= 0 returns true at
// once. Handlers that inject latency or pace a body pass their request's
// context, so that a client hanging up frees them at once, and a stop
// channel closed on shutdown, so that Close need not wait out the delays.
func Sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}

// secretLog keeps the latest download tokens and URL signatures issued.
type secretLog struct {
	mu   sync.Mutex
	list []string
}

// maxSecrets bounds what secretLog keeps: a benchmark mints thousands.
const maxSecrets = 4096

func (l *secretLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.list) == maxSecrets {
		l.list = append(l.list[:0], l.list[maxSecrets/2:]...)
	}
	l.list = append(l.list, s)
}

// IssuedSecrets returns the download tokens and storage URL signatures
// issued so far (the latest few thousand), for tests that check that a
// client never shows them.
func (s *Server) IssuedSecrets() []string {
	s.secrets.mu.Lock()
	defer s.secrets.mu.Unlock()
	return append([]string(nil), s.secrets.list...)
}

// Counters count what clients did since Start or ResetCounters. An API
// request counts under its endpoint's kind whatever its outcome, injected
// faults included.
type Counters struct {
	APICalls        map[string]int64 // by kind: "organizations", "apps", "app", "builds", "build", "downloadToken"
	TokensMinted    int64
	Redirects       int64 // successful 302s from the download host
	StorageRequests int64 // every request to the storage host, failed ones included
	StorageBytes    int64 // body bytes written by storage
}

// stats holds the live counters.
type stats struct {
	mu       sync.Mutex
	apiCalls map[string]int64

	tokensMinted    atomic.Int64
	redirects       atomic.Int64
	storageRequests atomic.Int64
	storageBytes    atomic.Int64
}

func (st *stats) countAPI(kind string) {
	st.mu.Lock()
	if st.apiCalls == nil {
		st.apiCalls = make(map[string]int64)
	}
	st.apiCalls[kind]++
	st.mu.Unlock()
}

// Counters returns a copy of the counters.
func (s *Server) Counters() Counters {
	st := &s.stats
	st.mu.Lock()
	calls := make(map[string]int64, len(st.apiCalls))
	for k, v := range st.apiCalls {
		calls[k] = v
	}
	st.mu.Unlock()
	return Counters{
		APICalls:        calls,
		TokensMinted:    st.tokensMinted.Load(),
		Redirects:       st.redirects.Load(),
		StorageRequests: st.storageRequests.Load(),
		StorageBytes:    st.storageBytes.Load(),
	}
}

// ResetCounters sets every counter to zero.
func (s *Server) ResetCounters() {
	st := &s.stats
	st.mu.Lock()
	clear(st.apiCalls)
	st.mu.Unlock()
	st.tokensMinted.Store(0)
	st.redirects.Store(0)
	st.storageRequests.Store(0)
	st.storageBytes.Store(0)
}
