package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"image"
	"image/png"
	"slices"
	"strconv"
	"sync"
	"time"
)

// isoMillis is the API's timestamp format: ISO-8601, UTC, milliseconds.
const isoMillis = "2006-01-02T15:04:05.000Z"

func isoTime(t time.Time) string { return t.UTC().Format(isoMillis) }

// fallbackCreated dates apps and organizations that have no builds.
var fallbackCreated = time.Date(2024, 1, 15, 9, 30, 0, 0, time.UTC)

// hash64 derives stable pseudo-random values from ids, so that fields the
// Dataset does not model (durations, uploader shape) are deterministic.
func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// fakeID derives a stable 24-hex id for sub-objects the Dataset does not
// model, such as files[] entries.
func fakeID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// buildTimes returns how long a build waited in the queue and how long it
// took to process, both in milliseconds, as the API reports them.
func buildTimes(b *Build) (queued, process int64) {
	h := hash64(b.ID)
	return 200 + int64(h%1000), 5000 + int64((h>>16)%55000)
}

// buildUpdatedAt is when the build last changed: its last edit, or its creation plus
// the queue and processing time it has gone through so far.
func buildUpdatedAt(b *Build) time.Time {
	queued, process := buildTimes(b)
	t := b.CreatedAt.Add(time.Duration(queued+process) * time.Millisecond)
	switch b.Status {
	case statusPending:
		t = b.CreatedAt
	case statusInProgress:
		t = b.CreatedAt.Add(time.Duration(queued) * time.Millisecond)
	}
	if b.EditedAt.After(t) {
		return b.EditedAt
	}
	return t
}

type orgJSON struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Slug      string  `json:"slug"`
	Picture   *string `json:"picture"`
	CreatedAt string  `json:"createdAt"`
	UpdatedAt string  `json:"updatedAt"`
}

func renderOrg(o *Org) orgJSON {
	created := fallbackCreated
	for _, a := range o.Apps {
		created = minTime(created, appCreated(a).Add(-24*time.Hour))
	}
	return orgJSON{
		ID:        o.ID,
		Name:      o.Name,
		Slug:      o.Slug,
		CreatedAt: isoTime(created),
		UpdatedAt: isoTime(created),
	}
}

// appCreated dates an app three days before its first build.
func appCreated(a *App) time.Time {
	if len(a.Builds) == 0 {
		return fallbackCreated
	}
	first := a.Builds[0].CreatedAt
	for _, b := range a.Builds {
		first = minTime(first, b.CreatedAt)
	}
	return first.Add(-72 * time.Hour)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

type appJSON struct {
	ID                     string             `json:"id"`
	Name                   string             `json:"name"`
	Slug                   string             `json:"slug"`
	SDK                    map[string]sdkJSON `json:"sdk"`
	Description            string             `json:"description"`
	OSs                    []string           `json:"oss"`
	BuildPlatforms         []string           `json:"buildPlatforms"`
	LastBuildProcessedDate *string            `json:"lastBuildProcessedDate"`
	Picture                *string            `json:"picture"`
	Organization           string             `json:"organization"`
	Counts                 struct{}           `json:"counts"`
	Metadata               struct{}           `json:"metadata"`
	CreatedAt              string             `json:"createdAt"`
	UpdatedAt              string             `json:"updatedAt"`
}

type sdkJSON struct {
	OTA         bool   `json:"ota"`
	ForceUpdate bool   `json:"forceUpdate"`
	MinVersion  string `json:"minVersion"`
	ForceAuth   bool   `json:"forceAuth"`
}

// renderApp derives the platform lists and dates the Dataset does not
// store from the app's builds.
func (s *Server) renderApp(org *Org, a *App) appJSON {
	j := appJSON{
		ID:             a.ID,
		Name:           a.Name,
		Slug:           a.Slug,
		SDK:            map[string]sdkJSON{},
		OSs:            []string{},
		BuildPlatforms: []string{},
		Organization:   org.ID,
	}
	created := appCreated(a)
	updated := created
	var lastProcessed time.Time
	for _, b := range a.Builds {
		if b.OS != "" && !slices.Contains(j.OSs, b.OS) {
			j.OSs = append(j.OSs, b.OS)
			j.SDK[b.OS] = sdkJSON{}
		}
		if b.BuildPlatform != "" && !slices.Contains(j.BuildPlatforms, b.BuildPlatform) {
			j.BuildPlatforms = append(j.BuildPlatforms, b.BuildPlatform)
		}
		t := buildUpdatedAt(b)
		if t.After(updated) {
			updated = t
		}
		if b.Status == statusProcessed && t.After(lastProcessed) {
			lastProcessed = t
		}
	}
	slices.Sort(j.OSs)
	slices.Sort(j.BuildPlatforms)
	if !lastProcessed.IsZero() {
		d := isoTime(lastProcessed)
		j.LastBuildProcessedDate = &d
	}
	j.CreatedAt, j.UpdatedAt = isoTime(created), isoTime(updated)
	return j
}

// buildJSON follows §6.1 of the reference, field for field.
type buildJSON struct {
	ID                string            `json:"id"`
	Status            string            `json:"status"`
	Tags              []string          `json:"tags"`
	VersionName       string            `json:"versionName"`
	Application       string            `json:"application"`
	ApplicationInfo   appInfoJSON       `json:"applicationInfo"`
	Changelog         string            `json:"changelog"`
	IconFile          struct{}          `json:"iconFile"`
	Info              map[string]any    `json:"info"`
	Size              any               `json:"size"` // int64 or string, see sizeValue
	ProcessTime       int64             `json:"processTime"`
	QueuedTime        int64             `json:"queuedTime"`
	VersionCode       string            `json:"versionCode"`
	Error             *string           `json:"error"`
	ErrorCode         *string           `json:"errorCode"`
	OS                string            `json:"os"`
	BuildPlatform     string            `json:"buildPlatform"`
	Deployer          deployerJSON      `json:"deployer"`
	UploadedBy        any               `json:"uploadedBy"` // object or id string, see uploader
	OriginalExtension string            `json:"originalExtension"`
	StorageProvider   struct{}          `json:"storageProvider"`
	ProcessLogs       []string          `json:"processLogs"`
	Files             []buildFileJSON   `json:"files"`
	Metadata          map[string]string `json:"metadata"`
	ExternalFileURL   *string           `json:"externalFileUrl"`
	HasEmmJSON        bool              `json:"hasEmmJson"`
	DefaultScripts    struct{}          `json:"defaultScripts"`
	Disabled          bool              `json:"disabled"`
	UpdatedAt         string            `json:"updatedAt"`
	CreatedAt         string            `json:"createdAt"`
}

type appInfoJSON struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Slug    string  `json:"slug"`
	Picture *string `json:"picture"`
}

type deployerJSON struct {
	Name string            `json:"name"`
	Info map[string]string `json:"info"`
}

type uploaderJSON struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
}

type buildFileJSON struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"` // package, original, icon
	Description string         `json:"description"`
	File        storedFileJSON `json:"file"`
	CreatedAt   string         `json:"createdAt"`
	UpdatedAt   string         `json:"updatedAt"`
}

type storedFileJSON struct {
	OriginalName      string `json:"originalName"`
	Mimetype          string `json:"mimetype"`
	Size              int64  `json:"size"`
	Checksum          string `json:"checksum"` // lowercase hex SHA-256
	Location          string `json:"location"`
	Bucket            string `json:"bucket"`
	Key               string `json:"key"`
	Region            string `json:"region"`
	StorageProviderID string `json:"storageProviderId"`
	CreatedAt         string `json:"createdAt"`
	UpdatedAt         string `json:"updatedAt"`
}

// renderBuild returns the build object. The caller holds s.data.mu.
func (s *Server) renderBuild(org *Org, app *App, b *Build) buildJSON {
	queued, process := buildTimes(b)
	created, updated := isoTime(b.CreatedAt), isoTime(buildUpdatedAt(b))
	j := buildJSON{
		ID:                b.ID,
		Status:            b.Status,
		Tags:              b.Tags,
		VersionName:       b.VersionName,
		Application:       app.ID,
		ApplicationInfo:   appInfoJSON{ID: app.ID, Name: app.Name, Slug: app.Slug},
		Changelog:         b.Changelog,
		Info:              map[string]any{},
		VersionCode:       b.VersionCode,
		OS:                b.OS,
		BuildPlatform:     b.BuildPlatform,
		Deployer:          deployer(b),
		UploadedBy:        uploader(org, b),
		OriginalExtension: b.OriginalExtension,
		ProcessLogs:       []string{},
		Files:             []buildFileJSON{},
		Metadata:          map[string]string{},
		UpdatedAt:         updated,
		CreatedAt:         created,
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	switch b.Status {
	case statusInProgress:
		j.QueuedTime = queued
	case statusProcessed, statusError:
		j.QueuedTime, j.ProcessTime = queued, process
	}
	if b.Status == statusError {
		msg, code := "Could not process the build: the package is not valid", "INVALID_PACKAGE"
		j.Error, j.ErrorCode = &msg, &code
	}
	var size int64
	if b.Status == statusProcessed {
		// Only a processed build has parsed metadata and stored files.
		j.Info = buildInfo(app, b)
		if pkg := s.object(app, b, typeFile); pkg != nil {
			size = int64(len(pkg.Data))
			j.Files = append(j.Files, s.fileEntry(b, "package", typeFile, pkg))
		}
		if orig := b.Objects[typeAAB]; orig != nil {
			j.Files = append(j.Files, s.fileEntry(b, "original", typeAAB, orig))
		}
		j.Files = append(j.Files, s.iconEntry(b))
	}
	j.Size = sizeValue(b, size)
	return j
}

// sizeValue is the top-level size: a number of bytes, except for builds
// with an odd versionCode, where it is a string. The documentation shows
// both types, so the emulator makes clients cope with both.
func sizeValue(b *Build, size int64) any {
	if code, err := strconv.ParseInt(b.VersionCode, 10, 64); err == nil && code%2 != 0 {
		return strconv.FormatInt(size, 10)
	}
	return size
}

// uploader is the uploadedBy field: a populated user object for some
// builds and a bare user id for others, as the documentation shows both.
// The choice is stable per build id.
func uploader(org *Org, b *Build) any {
	id := fakeID("uploader", org.ID)
	if hash64(b.ID)%2 == 0 {
		return id
	}
	return uploaderJSON{ID: id, Email: "ci@" + org.Slug + ".example", FirstName: "CI", LastName: "Bot"}
}

func deployer(b *Build) deployerJSON {
	return deployerJSON{
		Name: "Jenkins CI",
		Info: map[string]string{
			"branch":      "main",
			"commit":      fakeID("commit", b.ID)[:7],
			"buildNumber": b.VersionCode,
		},
	}
}

// buildInfo is the metadata Applivery extracts from a processed package.
func buildInfo(app *App, b *Build) map[string]any {
	switch b.OS {
	case "android":
		return map[string]any{
			"icon": "",
			"android": map[string]any{
				"targetSdkVersion":         "34",
				"minSDKVersion":            b.MinOS,
				"packageName":              b.PackageName,
				"platformBuildVersionName": "14",
				"platformBuildVersionCode": "34",
				"versionName":              b.VersionName,
				"versionCode":              b.VersionCode,
				"icon":                     "res/mipmap-xxxhdpi/ic_launcher.png",
			},
		}
	case "ios":
		return map[string]any{
			"icon": "",
			"ios": map[string]any{
				"plist": map[string]any{
					"CFBundleDisplayName":        app.Name,
					"CFBundleSupportedPlatforms": []string{"iPhoneOS"},
					"MinimumOSVersion":           b.MinOS,
					"CFBundleIdentifier":         b.PackageName,
					"CFBundleShortVersionString": b.VersionName,
					"CFBundleVersion":            b.VersionCode,
					"CFBundleName":               app.Name,
					"CFBundleIcons":              []string{},
					"UIDeviceFamily":             []int{1, 2},
				},
				"mobileprovision": map[string]any{
					"TeamIdentifier":       []string{"A1B2C3D4E5"},
					"ProvisionsAllDevices": false,
					"TeamName":             "Emulated Team",
					"ProvisionedDevices":   []string{},
				},
			},
		}
	case "macos":
		return map[string]any{
			"icon": "",
			"macos": map[string]any{
				"plist": map[string]any{
					"CFBundleSupportedPlatforms": []string{"MacOSX"},
					"MinimumOSVersion":           b.MinOS,
					"LSMinimumSystemVersion":     b.MinOS,
					"CFBundleIdentifier":         b.PackageName,
					"CFBundleShortVersionString": b.VersionName,
					"CFBundleVersion":            b.VersionCode,
					"CFBundleName":               app.Name,
				},
			},
		}
	}
	return map[string]any{}
}

// fileEntry describes a stored object in files[]. Size and checksum are
// those of the bytes storage serves right now.
func (s *Server) fileEntry(b *Build, kind, typ string, o *Object) buildFileJSON {
	sum := s.digests.sum(o, o.Data)
	return s.storedFile(b, kind, typ, o.Name, int64(len(o.Data)), hex.EncodeToString(sum[:]))
}

// iconEntry describes the build's icon. Icons are not downloadable
// through the download flow, so it is a fixed image of a known size.
func (s *Server) iconEntry(b *Build) buildFileJSON {
	icon := iconPNG()
	sum := sha256.Sum256(icon)
	return s.storedFile(b, "icon", "icon", "icon.png", int64(len(icon)), hex.EncodeToString(sum[:]))
}

func (s *Server) storedFile(b *Build, kind, typ, name string, size int64, checksum string) buildFileJSON {
	created, updated := isoTime(b.CreatedAt), isoTime(buildUpdatedAt(b))
	key := objectPath(b.ID, typ, name)
	return buildFileJSON{
		ID:   fakeID("file", b.ID, kind),
		Type: kind,
		File: storedFileJSON{
			OriginalName: name,
			Mimetype:     mimeType(name),
			Size:         size,
			Checksum:     checksum,
			// The unsigned location, as a private bucket would list it:
			// fetching it without a signature is refused.
			Location:          s.storageURL + key,
			Bucket:            "applivery-emulator",
			Key:               key[1:],
			Region:            "local",
			StorageProviderID: fakeID("storage-provider"),
			CreatedAt:         created,
			UpdatedAt:         updated,
		},
		CreatedAt: created,
		UpdatedAt: updated,
	}
}

// iconPNG is a tiny valid PNG standing in for every build icon.
var iconPNG = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		panic("emulator: encode icon: " + err.Error())
	}
	return buf.Bytes()
})
