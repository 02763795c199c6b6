package emulator

import (
	"crypto/rand"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tokenGrace is how long an expired download token is remembered, so
// that using it answers "Token Expired" rather than "not found".
const tokenGrace = time.Hour

// tokenStore holds the download tokens minted and not yet redeemed.
type tokenStore struct {
	mu     sync.Mutex
	m      map[string]tokenGrant
	minted int
}

// tokenGrant is what a download token authorizes: one object of a build.
type tokenGrant struct {
	buildID, typ string
	expires      time.Time
}

// mint returns a new token for a build's object and its expiry.
func (t *tokenStore) mint(buildID, typ string, ttl time.Duration) (string, time.Time) {
	token := rand.Text()
	now := time.Now()
	expires := now.Add(ttl).Truncate(time.Millisecond) // as precise as expiresAt says
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]tokenGrant)
	}
	t.m[token] = tokenGrant{buildID: buildID, typ: typ, expires: expires}
	// Forget long-expired tokens now and then, so a benchmark minting
	// millions does not grow the map without bound.
	if t.minted++; t.minted%1024 == 0 {
		for k, g := range t.m {
			if now.Sub(g.expires) > tokenGrace {
				delete(t.m, k)
			}
		}
	}
	return token, expires
}

// redeem uses a token up. Tokens are single-use: the first successful
// redemption consumes it, later ones find nothing.
func (t *tokenStore) redeem(token string) (tokenGrant, *apiError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.m[token]
	switch {
	case !ok:
		return tokenGrant{}, errNotFound
	case !time.Now().Before(g.expires):
		return tokenGrant{}, errTokenExpired
	}
	delete(t.m, token)
	return g, nil
}

// serveDownload is the download host. It needs no Authorization: the
// token in the path is the credential.
//
//	GET /v1/download/{token}       302 to the signed storage URL, once
//	GET /v1/ota/{buildId}/{name}   302 to an Apple build's package; the
//	                               stable URL inside OTA manifests
func (s *Server) serveDownload(w http.ResponseWriter, r *http.Request) {
	if s.dropIfDown(w) || !s.delay(r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, errMethod)
		return
	}
	seg := strings.Split(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/"), "/")
	switch {
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "download":
		g, err := s.tokens.redeem(seg[2])
		if err != nil {
			writeError(w, err)
			return
		}
		s.redirect(w, g.buildID, g.typ, "")
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "ota":
		s.redirect(w, seg[2], typeFile, seg[3])
	default:
		writeError(w, errNotFound)
	}
}

// redirect answers 302 to a signed URL of a build's object. A non-empty
// name must match the object's.
func (s *Server) redirect(w http.ResponseWriter, buildID, typ, name string) {
	s.data.mu.RLock()
	var objName string
	found := false
	if _, app, b := s.data.locate(buildID); b != nil {
		if o := s.object(app, b, typ); o != nil && (name == "" || name == o.Name) {
			objName, found = o.Name, true
		}
	}
	s.data.mu.RUnlock()
	if !found {
		writeError(w, errNotFound)
		return
	}
	w.Header().Set("Location", s.signedURL(buildID, typ, objName))
	w.WriteHeader(http.StatusFound)
	s.stats.redirects.Add(1)
}
