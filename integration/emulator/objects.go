package emulator

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path"
	"sync"
)

// object returns what build b of app serves for a download type, or nil.
// The caller holds s.data.mu.
func (s *Server) object(app *App, b *Build, typ string) *Object {
	if o := b.Objects[typ]; o != nil {
		return o
	}
	switch {
	case b.OS == "android" && typ == typeAuto:
		return b.Objects[typeFile]
	case b.OS == "android" && typ == typeFile:
		return b.Objects[typeAuto]
	case b.isApple() && typ == typeAuto:
		if pkg := b.Objects[typeFile]; pkg != nil {
			return s.manifests.get(s, app, b, pkg)
		}
	}
	return nil
}

// Object returns the exact bytes served for a build's download type
// ("auto", "file", "aab"), or ok=false if it has none. The slice is the
// stored one, not a copy: do not modify it.
func (s *Server) Object(buildID, typ string) ([]byte, bool) {
	s.data.mu.RLock()
	defer s.data.mu.RUnlock()
	_, app, b := s.data.locate(buildID)
	if b == nil {
		return nil, false
	}
	o := s.object(app, b, typ)
	if o == nil {
		return nil, false
	}
	return o.Data, true
}

// MutateObject replaces the bytes of one object with different bytes of
// the same length, so its ETag and API checksum change. Every byte
// changes, so any cached block of the old content is stale. On Android
// "auto" and "file" share one object and change together.
func (s *Server) MutateObject(buildID, typ string) error {
	s.data.mu.Lock()
	defer s.data.mu.Unlock()
	_, app, b := s.data.locate(buildID)
	if b == nil {
		return fmt.Errorf("emulator: MutateObject: no build %q", buildID)
	}
	o := s.object(app, b, typ)
	if o == nil {
		return fmt.Errorf("emulator: MutateObject: build %s has no %q object", buildID, typ)
	}
	if len(o.Data) == 0 {
		return fmt.Errorf("emulator: MutateObject: build %s %q object is empty", buildID, typ)
	}
	// A fresh slice, never an in-place write: responses streaming the old
	// bytes keep serving them consistently. Seeding the key stream with
	// the old digest keeps repeated mutations from cycling back.
	old := o.Data
	key := make([]byte, len(old))
	rand.NewChaCha8(s.digests.sum(o, old)).Read(key)
	for i := range key {
		key[i] = old[i] ^ (key[i] | 1)
	}
	o.Data = key
	return nil
}

// digestCache remembers the SHA-256 of each object's bytes: the ETag and
// the files[] checksum need it on every request, and hashing a 1 GiB
// object each time would dominate a benchmark.
type digestCache struct {
	mu sync.Mutex
	m  map[*Object]digest
}

type digest struct {
	data []byte // the slice the sum was computed over
	sum  [sha256.Size]byte
}

// sum returns the SHA-256 of data, the current content of o.
func (c *digestCache) sum(o *Object, data []byte) [sha256.Size]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.m[o]; ok && sameSlice(d.data, data) {
		return d.sum
	}
	if c.m == nil {
		c.m = make(map[*Object]digest)
	}
	d := digest{data: data, sum: sha256.Sum256(data)}
	c.m[o] = d
	return d.sum
}

// sameSlice reports whether a and b are the same bytes in memory. Object
// data is replaced, never written in place, so identity implies content.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// manifestCache holds the OTA manifests the server writes for Apple
// builds, one per build, so each is stable for the server's lifetime.
type manifestCache struct {
	mu sync.Mutex
	m  map[string]*Object // by build id
}

func (c *manifestCache) get(s *Server, app *App, b *Build, pkg *Object) *Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.m[b.ID]; o != nil {
		return o
	}
	if c.m == nil {
		c.m = make(map[string]*Object)
	}
	pkgURL := s.downloadURL + "/v1/ota/" + b.ID + "/" + url.PathEscape(pkg.Name)
	o := &Object{
		Name: "manifest.plist",
		Data: otaManifest(pkgURL, b.PackageName, b.VersionName, app.Name),
	}
	c.m[b.ID] = o
	return o
}

// otaManifest is the itms-services install manifest of an Apple build.
func otaManifest(pkgURL, bundleID, version, title string) []byte {
	return plistXML(dict{
		{"items", []any{dict{
			{"assets", []any{dict{
				{"kind", "software-package"},
				{"url", pkgURL},
			}}},
			{"metadata", dict{
				{"bundle-identifier", bundleID},
				{"bundle-version", version},
				{"kind", "software"},
				{"title", title},
			}},
		}}},
	})
}

// objectPath is the storage path of an object, unescaped.
func objectPath(buildID, typ, name string) string {
	return "/o/" + buildID + "/" + typ + "/" + name
}

// mimeType maps the extensions builds come in; the system MIME table
// lacks most of them.
func mimeType(name string) string {
	switch path.Ext(name) {
	case ".apk":
		return "application/vnd.android.package-archive"
	case ".plist":
		return "text/xml; charset=utf-8"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}

// MountExt is the extension the mounted tree gives a build's file of a
// download type (README, The tree): what tests and the soak expect to find.
func MountExt(b *Build, typ string) string {
	switch {
	case typ == typeAAB:
		return "aab"
	case b.OS == "android":
		return "apk"
	case typ == typeAuto:
		return "plist"
	case b.OS == "ios":
		return "ipa"
	case b.OS == "macos":
		return "pkg"
	}
	return b.OriginalExtension
}

// TreeFile is one file the mounted tree shows for the emulator's data.
type TreeFile struct {
	Org   *Org
	App   *App
	Build *Build
	Type  string // auto, file or aab
	Name  string // as the tree names it: file.ipa
	Data  []byte
}

// TreeFiles lists every file of a processed build, as the tree contract
// (README, The tree) says a mount shows it: what tests expect to read.
func (s *Server) TreeFiles() []TreeFile {
	var out []TreeFile
	for _, o := range s.data.Orgs {
		for _, a := range o.Apps {
			for _, b := range a.Builds {
				if b.Status != statusProcessed {
					continue
				}
				for _, typ := range []string{typeAuto, typeFile, typeAAB} {
					if data, ok := s.Object(b.ID, typ); ok {
						out = append(out, TreeFile{o, a, b, typ, typ + "." + MountExt(b, typ), data})
					}
				}
			}
		}
	}
	return out
}
