package emulator

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// sampleEpoch anchors SampleData's clock: every build is created a
// distinct whole number of hours before it, so ordering is unambiguous.
var sampleEpoch = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// hoursAgo returns sampleEpoch minus h hours, plus a sub-second offset
// so that timestamps exercise the milliseconds of the API's format.
func hoursAgo(h int) time.Time {
	return sampleEpoch.Add(-time.Duration(h)*time.Hour + time.Duration(h*37%1000)*time.Millisecond)
}

// SampleData returns a small deterministic dataset (about 14 MB of
// objects) with every case a client must handle:
//
//	acme (Acme Mobile)
//	  field-app  Android: an .aab build (universal .apk as auto/file, .aab as
//	             aab), an older .apk build, a pending build (the newest of
//	             all) and an error build
//	  field-ios  iOS: two processed .ipa builds and an in_progress one
//	  desk       macOS: one processed .pkg build
//	  nightly    Android: 130 processed .apk builds, more than a page
//	beta-labs (Beta Labs)
//	  beta       Android: one processed .apk build
//
// Each call returns a fresh tree with the same ids, times and bytes. The
// object bytes are generated once per process and shared between calls;
// they must not be modified in place.
func SampleData() *Dataset {
	ids := &idSeq{prefix: 0x65f0c3a1}
	acme := &Org{ID: ids.next(), Name: "Acme Mobile", Slug: "acme"}
	beta := &Org{ID: ids.next(), Name: "Beta Labs", Slug: "beta-labs"}

	field := &App{ID: ids.next(), Name: "Field App", Slug: "field-app"}
	const fieldPkg = "com.acme.field"
	field.Builds = []*Build{
		androidBuild(ids.next(), statusPending, "aab", fieldPkg, "2.5.0", "250", 1, 0, 0),
		androidBuild(ids.next(), statusError, "aab", fieldPkg, "2.4.1", "241", 3, 0, 0),
		androidBuild(ids.next(), statusProcessed, "aab", fieldPkg, "2.4.0", "240", 6, 2_412_345, 1_893_211),
		androidBuild(ids.next(), statusProcessed, "apk", fieldPkg, "2.3.0", "231", 48, 1_634_567, 0),
	}
	field.Builds[0].Changelog = "Offline sync (processing)"
	field.Builds[2].Changelog = "Fixes login crash"
	field.Builds[2].Tags = []string{"qa", "release"}

	fieldIOS := &App{ID: ids.next(), Name: "Field iOS", Slug: "field-ios"}
	fieldIOS.Builds = []*Build{
		iosBuild(ids.next(), statusInProgress, "3.2.0", "320", 2, 0),
		iosBuild(ids.next(), statusProcessed, "3.1.0", "310", 10, 3_145_728+1_234),
		iosBuild(ids.next(), statusProcessed, "3.0.2", "303", 72, 2_621_440+4_321),
	}

	desk := &App{ID: ids.next(), Name: "Desk", Slug: "desk"}
	desk.Builds = []*Build{macBuild(ids.next(), "1.8.0", "180", 20, 1_000_003)}

	nightly := &App{ID: ids.next(), Name: "Nightly", Slug: "nightly"}
	for i := 1; i <= 130; i++ {
		b := androidBuild(ids.next(), statusProcessed, "apk", "com.acme.nightly",
			fmt.Sprintf("1.0.%d", i), fmt.Sprint(i), 400-i, 2_000+int64(i*29%4_000), 0)
		b.Tags = []string{"nightly"}
		nightly.Builds = append(nightly.Builds, b)
	}

	betaApp := &App{ID: ids.next(), Name: "Beta", Slug: "beta"}
	betaApp.Builds = []*Build{
		androidBuild(ids.next(), statusProcessed, "apk", "io.betalabs.beta", "0.1.0", "1", 30, 301_234, 0),
	}

	acme.Apps = []*App{field, fieldIOS, desk, nightly}
	beta.Apps = []*App{betaApp}
	return &Dataset{Orgs: []*Org{acme, beta}}
}

// androidBuild returns an Android build created h hours before the
// epoch. Processed builds get a universal .apk of about apkSize bytes
// served as auto and file and, with aabSize > 0, the original .aab.
func androidBuild(id, status, ext, pkg, versionName, versionCode string, h int, apkSize, aabSize int64) *Build {
	b := &Build{
		ID:                id,
		Status:            status,
		OS:                "android",
		BuildPlatform:     "android",
		VersionName:       versionName,
		VersionCode:       versionCode,
		OriginalExtension: ext,
		CreatedAt:         hoursAgo(h),
		Changelog:         "Build " + versionName,
		PackageName:       pkg,
		MinOS:             "24",
		Objects:           map[string]*Object{},
	}
	if status != statusProcessed {
		return b
	}
	apkName := "app-release.apk"
	if ext == "aab" {
		apkName = "app-release-universal.apk"
	}
	label := pkg + "/" + versionCode
	apk := &Object{Name: apkName, Data: memo(label+".apk", func() []byte {
		return androidZip(label+".apk", apkEntries(pkg, versionName, versionCode, apkSize), b.CreatedAt)
	})}
	// One object for both types: they serve the same bytes and must
	// change together under MutateObject.
	b.Objects[typeAuto], b.Objects[typeFile] = apk, apk
	if aabSize > 0 {
		b.Objects[typeAAB] = &Object{Name: "app-release.aab", Data: memo(label+".aab", func() []byte {
			return androidZip(label+".aab", aabEntries(pkg, versionName, versionCode, aabSize), b.CreatedAt)
		})}
	}
	return b
}

func iosBuild(id, status, versionName, versionCode string, h int, binarySize int64) *Build {
	b := &Build{
		ID:                id,
		Status:            status,
		OS:                "ios",
		BuildPlatform:     "ios",
		VersionName:       versionName,
		VersionCode:       versionCode,
		OriginalExtension: "ipa",
		CreatedAt:         hoursAgo(h),
		Changelog:         "Build " + versionName,
		PackageName:       "com.acme.FieldApp",
		MinOS:             "15.0",
		Objects:           map[string]*Object{},
	}
	if status != statusProcessed {
		return b
	}
	// "auto" is the OTA manifest, which the server writes: it names the
	// server's download host.
	label := b.PackageName + "/" + versionCode
	b.Objects[typeFile] = &Object{Name: "FieldApp.ipa", Data: memo(label+".ipa", func() []byte {
		app := ipaApp{exe: "FieldApp", name: "Field iOS", bundleID: b.PackageName, version: versionName, build: versionCode, minOS: b.MinOS}
		entries := app.entries()
		entries = append(entries,
			zipEntry{name: app.dir() + app.exe, head: []byte("\xcf\xfa\xed\xfe"), random: binarySize},
			zipEntry{name: app.dir() + "PkgInfo", text: []byte("APPL????")},
			zipEntry{name: app.dir() + "embedded.mobileprovision", random: 7_421},
			zipEntry{name: app.dir() + "Assets.car", random: 183_115},
			zipEntry{name: app.dir() + "AppIcon60x60@2x.png", text: iconPNG()},
			zipEntry{name: app.dir() + "_CodeSignature/CodeResources", text: plistXML(dict{
				{"files", dict{{"Assets.car", "c2lnbmF0dXJl"}, {"PkgInfo", "c2lnbmF0dXJl"}}},
			})},
		)
		return buildZip(entries, b.CreatedAt, seedOf(label+".ipa"), "", binarySize+1<<20)
	})}
	return b
}

func macBuild(id, versionName, versionCode string, h int, size int64) *Build {
	b := &Build{
		ID:                id,
		Status:            statusProcessed,
		OS:                "macos",
		BuildPlatform:     "macos",
		VersionName:       versionName,
		VersionCode:       versionCode,
		OriginalExtension: "pkg",
		CreatedAt:         hoursAgo(h),
		Changelog:         "Build " + versionName,
		PackageName:       "com.acme.Desk",
		MinOS:             "12.0",
		Objects:           map[string]*Object{},
	}
	label := b.PackageName + "/" + versionCode
	b.Objects[typeFile] = &Object{Name: "Desk-" + versionName + ".pkg", Data: memo(label+".pkg", func() []byte {
		// A xar archive header followed by noise: enough to look like a
		// flat package to anything sniffing the magic.
		data := make([]byte, size)
		rand.NewChaCha8(seedOf(label + ".pkg")).Read(data)
		copy(data, "xar!\x00\x1c\x00\x01")
		return data
	})}
	return b
}

// blobs memoizes SampleData's generated objects: generating them is
// deterministic, so the bytes can be shared by every dataset.
var blobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func memo(key string, gen func() []byte) []byte {
	blobs.mu.Lock()
	defer blobs.mu.Unlock()
	if b, ok := blobs.m[key]; ok {
		return b
	}
	if blobs.m == nil {
		blobs.m = make(map[string][]byte)
	}
	b := gen()
	blobs.m[key] = b
	return b
}

// seedOf derives a ChaCha8 seed from a label, so each object has its own
// fixed random content.
func seedOf(label string) [32]byte { return sha256.Sum256([]byte(label)) }

// androidZip builds an .apk or .aab. Its size is kept off multiples of
// 4096 so that clients cannot get away with assuming whole blocks.
func androidZip(label string, entries []zipEntry, modified time.Time) []byte {
	data := buildZip(entries, modified, seedOf(label), "", 0)
	if len(data)%4096 == 0 {
		data = buildZip(entries, modified, seedOf(label), "signed", 0)
	}
	return data
}

func apkEntries(pkg, versionName, versionCode string, size int64) []zipEntry {
	return []zipEntry{
		{name: "AndroidManifest.xml", text: androidManifest(pkg, versionName, versionCode)},
		{name: "classes.dex", head: []byte("dex\n035\x00"), random: size * 8 / 10},
		{name: "resources.arsc", random: size * 15 / 100},
		{name: "res/mipmap-xxxhdpi/ic_launcher.png", text: iconPNG()},
		{name: "META-INF/MANIFEST.MF", text: []byte("Manifest-Version: 1.0\r\nCreated-By: emulator\r\n\r\n")},
	}
}

func aabEntries(pkg, versionName, versionCode string, size int64) []zipEntry {
	return []zipEntry{
		{name: "BundleConfig.pb", random: 97},
		{name: "base/manifest/AndroidManifest.xml", text: androidManifest(pkg, versionName, versionCode)},
		{name: "base/dex/classes.dex", head: []byte("dex\n035\x00"), random: size * 8 / 10},
		{name: "base/resources.pb", random: size * 15 / 100},
		{name: "base/res/mipmap-xxxhdpi/ic_launcher.png", text: iconPNG()},
		{name: "META-INF/MANIFEST.MF", text: []byte("Manifest-Version: 1.0\r\nCreated-By: emulator\r\n\r\n")},
	}
}

// androidManifest is a readable stand-in for the binary manifest.
func androidManifest(pkg, versionName, versionCode string) []byte {
	return fmt.Appendf(nil, `<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package=%q android:versionCode=%q android:versionName=%q>
    <uses-sdk android:minSdkVersion="24" android:targetSdkVersion="34"/>
    <application android:label="@string/app_name" android:icon="@mipmap/ic_launcher"/>
</manifest>
`, pkg, versionCode, versionName)
}

// ipaApp describes the application bundle inside an .ipa.
type ipaApp struct {
	exe, name, bundleID, version, build, minOS string
}

func (a ipaApp) dir() string { return "Payload/" + a.exe + ".app/" }

// entries returns the bundle's Info.plist.
func (a ipaApp) entries() []zipEntry {
	plist := plistXML(dict{
		{"CFBundleDevelopmentRegion", "en"},
		{"CFBundleDisplayName", a.name},
		{"CFBundleExecutable", a.exe},
		{"CFBundleIdentifier", a.bundleID},
		{"CFBundleInfoDictionaryVersion", "6.0"},
		{"CFBundleName", a.name},
		{"CFBundlePackageType", "APPL"},
		{"CFBundleShortVersionString", a.version},
		{"CFBundleSupportedPlatforms", []string{"iPhoneOS"}},
		{"CFBundleVersion", a.build},
		{"MinimumOSVersion", a.minOS},
		{"UIDeviceFamily", []any{1, 2}},
		{"UIRequiresFullScreen", true},
	})
	return []zipEntry{{name: a.dir() + "Info.plist", text: plist}}
}

// GenerateIPA returns a valid .ipa (zip) of about size bytes:
// Payload/App.app/Info.plist, deflated, plus entries stored
// (uncompressed) files of random data, the first being the executable
// Payload/App.app/App. The same seed gives the same bytes. The zip is
// written into one buffer allocated up front, so 1 GiB with 2000 entries
// costs one pass of random generation and checksumming.
func GenerateIPA(size int64, entries int, seed int64) []byte {
	entries = max(entries, 0)
	app := ipaApp{exe: "App", name: "App", bundleID: "com.example.generated", version: "1.0", build: "1", minOS: "15.0"}
	files := app.entries()

	// Spread the payload unevenly, as real bundles are, over entries
	// whose sizes add up to size minus the zip's own overhead.
	names := make([]string, entries)
	overhead := int64(4 << 10) // Info.plist, end of central directory
	for i := range names {
		names[i] = app.dir() + app.exe
		if i > 0 {
			names[i] = fmt.Sprintf("%sResources/asset-%05d.bin", app.dir(), i)
		}
		// Local header, data descriptor and central directory record,
		// each with the name and an extended-timestamp field.
		overhead += 30 + 16 + 46 + 2*(int64(len(names[i]))+9)
	}
	payload := max(size-overhead, 0)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x1fa))
	weights := make([]float64, entries)
	var total float64
	for i := range weights {
		weights[i] = 0.5 + rng.Float64()
		total += weights[i]
	}
	var assigned int64
	for i, name := range names {
		n := int64(float64(payload) * weights[i] / total)
		if i == entries-1 {
			n = payload - assigned // the remainder, so the sizes add up
		}
		assigned += n
		files = append(files, zipEntry{name: name, random: n})
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(uint64(seed) >> (8 * i))
	}
	return buildZip(files, sampleEpoch, key, "", payload+overhead)
}

// zipEntry is one file of a generated zip: either text, deflated, or
// head followed by random bytes, stored.
type zipEntry struct {
	name   string
	text   []byte
	head   []byte
	random int64
}

// buildZip writes entries into a zip. capacity presizes the buffer; the
// random content comes from a ChaCha8 stream seeded with seed.
func buildZip(entries []zipEntry, modified time.Time, seed [32]byte, comment string, capacity int64) []byte {
	buf := bytes.NewBuffer(make([]byte, 0, capacity))
	zw := zip.NewWriter(buf)
	rng := rand.NewChaCha8(seed)
	var chunk []byte
	for _, e := range entries {
		hdr := &zip.FileHeader{Name: e.name, Modified: modified, Method: zip.Store}
		if e.text != nil {
			hdr.Method = zip.Deflate
		}
		w, err := zw.CreateHeader(hdr)
		must(err)
		if e.text != nil {
			_, err = w.Write(e.text)
			must(err)
			continue
		}
		_, err = w.Write(e.head)
		must(err)
		if chunk == nil && e.random > 0 {
			chunk = make([]byte, 256<<10)
		}
		for n := e.random; n > 0; {
			c := chunk[:min(n, int64(len(chunk)))]
			rng.Read(c)
			_, err = w.Write(c)
			must(err)
			n -= int64(len(c))
		}
	}
	must(zw.SetComment(comment))
	must(zw.Close())
	return buf.Bytes()
}

// must panics on errors that cannot happen: zip writes into a
// bytes.Buffer fail only on programming errors.
func must(err error) {
	if err != nil {
		panic("emulator: build zip: " + err.Error())
	}
}
