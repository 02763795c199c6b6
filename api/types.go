package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// Organization is a workspace the service account can see.
type Organization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// App is an application of an organization.
type App struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	Slug           string   `json:"slug"`
	OSs            []string `json:"oss"`
	BuildPlatforms []string `json:"buildPlatforms"`
}

// Build statuses.
const (
	StatusPending    = "pending"
	StatusInProgress = "in_progress"
	StatusProcessed  = "processed"
	StatusError      = "error"
)

// Build is one uploaded binary of an app. Only the fields the filesystem
// and the CLI need are typed; the rest of the object is ignored.
type Build struct {
	ID                string      `json:"id"`
	Status            string      `json:"status"`
	OS                string      `json:"os"`
	BuildPlatform     string      `json:"buildPlatform"`
	VersionName       string      `json:"versionName"`
	VersionCode       FlexString  `json:"versionCode"`
	OriginalExtension string      `json:"originalExtension"`
	Size              FlexInt     `json:"size"`
	Files             []BuildFile `json:"files"`
	Info              BuildInfo   `json:"info"`
	Tags              []string    `json:"tags"`
	Changelog         string      `json:"changelog"`
	UploadedBy        Uploader    `json:"uploadedBy"`
	CreatedAt         time.Time   `json:"createdAt"`
	UpdatedAt         time.Time   `json:"updatedAt"`
}

// BuildFile is an entry of a build's files[]: the processed package, the
// original upload, the icon or an attachment.
type BuildFile struct {
	ID   string `json:"id"`
	Type string `json:"type"` // package, original, icon, attachment
	File struct {
		OriginalName string  `json:"originalName"`
		MimeType     string  `json:"mimetype"`
		Size         FlexInt `json:"size"`
		Checksum     string  `json:"checksum"`
	} `json:"file"`
}

// BuildInfo is what Applivery read out of the binary.
type BuildInfo struct {
	Android *struct {
		PackageName   string     `json:"packageName"`
		MinSDKVersion FlexString `json:"minSDKVersion"`
		VersionName   FlexString `json:"versionName"`
		VersionCode   FlexString `json:"versionCode"`
	} `json:"android"`
	IOS   *appleInfo `json:"ios"`
	MacOS *appleInfo `json:"macos"`
}

type appleInfo struct {
	Plist struct {
		CFBundleIdentifier         string     `json:"CFBundleIdentifier"`
		MinimumOSVersion           FlexString `json:"MinimumOSVersion"`
		CFBundleShortVersionString FlexString `json:"CFBundleShortVersionString"`
		CFBundleVersion            FlexString `json:"CFBundleVersion"`
	} `json:"plist"`
}

// PackageName is the Android package name or the Apple bundle id.
func (i BuildInfo) PackageName() string {
	switch {
	case i.Android != nil:
		return i.Android.PackageName
	case i.IOS != nil:
		return i.IOS.Plist.CFBundleIdentifier
	case i.MacOS != nil:
		return i.MacOS.Plist.CFBundleIdentifier
	}
	return ""
}

// MinOS is the minimum Android SDK level or Apple OS version.
func (i BuildInfo) MinOS() string {
	switch {
	case i.Android != nil:
		return string(i.Android.MinSDKVersion)
	case i.IOS != nil:
		return string(i.IOS.Plist.MinimumOSVersion)
	case i.MacOS != nil:
		return string(i.MacOS.Plist.MinimumOSVersion)
	}
	return ""
}

// FlexInt decodes a number that the docs show both as a JSON number and as a
// string ("size": "48213577"). Absent or null decodes as 0 with Valid false.
type FlexInt struct {
	Value int64
	Valid bool
}

func (f *FlexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*f = FlexInt{}
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimSpace(s)
		if s == "" {
			*f = FlexInt{}
			return nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// A float such as 1.2e6 still names a byte count; NaN, infinities
		// and values past int64 do not (converting them is undefined).
		fl, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || !(fl >= 0 && fl < 1<<63) {
			return fmt.Errorf("not a number: %.40q", s)
		}
		n = int64(fl)
	}
	*f = FlexInt{Value: n, Valid: true}
	return nil
}

func (f FlexInt) MarshalJSON() ([]byte, error) {
	if !f.Valid {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, f.Value, 10), nil
}

// FlexString decodes a string that may also arrive as a number.
type FlexString string

func (f *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexString(s)
	default:
		*f = FlexString(b)
	}
	return nil
}

// Uploader is who uploaded a build: the docs show both a plain string and
// an object; either decodes.
type Uploader struct {
	ID    string `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

func (u *Uploader) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*u = Uploader{}
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*u = Uploader{Name: s}
		if strings.Contains(s, "@") {
			*u = Uploader{Email: s}
		}
		return nil
	case len(b) > 0 && b[0] == '{':
		// Fields of another type (a numeric id) are kept as text too.
		var o struct {
			ID    FlexString `json:"id"`
			Email FlexString `json:"email"`
			Name  FlexString `json:"name"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*u = Uploader{ID: string(o.ID), Email: string(o.Email), Name: string(o.Name)}
		return nil
	}
	// Anything else (a bare id number, say) is kept as text rather than failing the whole build.
	*u = Uploader{ID: string(b)}
	return nil
}

// String is the uploader's most readable name.
func (u Uploader) String() string {
	switch {
	case u.Email != "":
		return u.Email
	case u.Name != "":
		return u.Name
	}
	return u.ID
}

// DownloadType selects what a download token serves.
type DownloadType string

const (
	Auto DownloadType = "auto" // Android: the (universal) .apk; Apple: the OTA install manifest
	File DownloadType = "file" // the binary: .apk, .ipa, .pkg, ...
	AAB  DownloadType = "aab"  // Android uploaded as .aab: the original bundle
)

// Artifact is one downloadable file of a build.
type Artifact struct {
	Type     DownloadType
	Ext      string // without the dot: apk, ipa, pkg, plist, aab
	Size     int64  // exact byte count, or -1 when the API does not say
	Checksum string // hex digest from the API, "" when none
}

// Artifacts lists what the build offers for download, in a fixed order.
// Sizes come from files[] (type package for auto/file, type original for
// aab); only an Apple OTA manifest has no size in the API.
func (b *Build) Artifacts() []Artifact {
	if b.Status != StatusProcessed {
		return nil
	}
	pkg, orig := b.file("package"), b.file("original")
	// A size of 0 is a placeholder some answers carry, never a build's
	// size: trusting it would serve an empty file. Unknown is learnt instead.
	pkgSize, pkgSum := int64(-1), ""
	if pkg != nil && pkg.File.Size.Valid && pkg.File.Size.Value > 0 {
		pkgSize, pkgSum = pkg.File.Size.Value, pkg.File.Checksum
	} else if b.Size.Valid && b.Size.Value > 0 {
		pkgSize = b.Size.Value
	}
	var out []Artifact
	switch b.platform() {
	case "android":
		out = append(out,
			Artifact{Type: Auto, Ext: "apk", Size: pkgSize, Checksum: pkgSum},
			Artifact{Type: File, Ext: "apk", Size: pkgSize, Checksum: pkgSum})
		if b.fromAAB() {
			a := Artifact{Type: AAB, Ext: "aab", Size: -1}
			if orig != nil && orig.File.Size.Valid && orig.File.Size.Value > 0 {
				a.Size, a.Checksum = orig.File.Size.Value, orig.File.Checksum
			}
			out = append(out, a)
		}
	case "ios", "macos":
		ext := "ipa"
		if b.platform() == "macos" {
			ext = "pkg"
			if e := b.originalExt(pkg); e != "" {
				ext = e // a .dmg stays a .dmg
			}
		}
		out = append(out,
			Artifact{Type: Auto, Ext: "plist", Size: -1},
			Artifact{Type: File, Ext: ext, Size: pkgSize, Checksum: pkgSum})
	default:
		ext := b.originalExt(pkg)
		if ext == "" {
			ext = "bin"
		}
		out = append(out, Artifact{Type: File, Ext: ext, Size: pkgSize, Checksum: pkgSum})
	}
	return out
}

func (b *Build) platform() string {
	p := strings.ToLower(b.BuildPlatform)
	if p == "" {
		p = strings.ToLower(b.OS)
	}
	return p
}

func (b *Build) fromAAB() bool {
	if b.originalExt(nil) == "aab" {
		return true
	}
	o := b.file("original")
	return o != nil && strings.EqualFold(path.Ext(o.File.OriginalName), ".aab")
}

// originalExt is the upload's extension, lower case, without a dot.
func (b *Build) originalExt(pkg *BuildFile) string {
	e := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(b.OriginalExtension), "."))
	if e == "" && pkg != nil {
		e = strings.ToLower(strings.TrimPrefix(path.Ext(pkg.File.OriginalName), "."))
	}
	if !validExt(e) {
		return ""
	}
	return e
}

func validExt(e string) bool {
	if e == "" || len(e) > 16 {
		return false
	}
	for _, r := range e {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.') {
			return false
		}
	}
	return true
}

func (b *Build) file(typ string) *BuildFile {
	for i := range b.Files {
		if b.Files[i].Type == typ {
			return &b.Files[i]
		}
	}
	return nil
}
