package api

// Fuzz tests of what the API and storage send us: the envelope decoder, the
// loose JSON types, the artifacts and names a build gets, and the headers
// parsed on the read path. `go test` runs the seeds and the corpus under
// testdata/fuzz; `make fuzz` explores further.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeEnvelope feeds any status, Retry-After and body to the decoder
// every API answer goes through, decoding data as nothing (ResolveToken), one
// build, or a page of builds. A non-2xx answer is always an *Error with its
// status; a 2xx answer succeeds only with a success envelope whose data
// decodes; only a 5xx or 429 is worth retrying, never an answer that could
// not be understood. Builds that decode must then give sound artifacts and
// names.
func FuzzDecodeEnvelope(f *testing.F) {
	build := `{"id":"65f0c3a112ae30237b17df14","status":"processed","os":"android","versionName":"1.0","versionCode":7,` +
		`"size":"1234","tags":["qa"],"uploadedBy":{"email":"ci@example.com"},"createdAt":"2026-01-02T03:04:05Z",` +
		`"files":[{"type":"package","file":{"originalName":"app.apk","size":1234,"checksum":"ab"}}]}`
	seeds := []struct {
		status int
		ra     string
		body   string
		mode   uint8
	}{
		{200, "", `{"status":true,"data":` + build + `}`, 1},
		{200, "", `{"status":true,"data":{"items":[` + build + `,` + build + `],"hasNextPage":false,"page":1}}`, 2},
		{200, "", `{"status":true,"data":{"items":[{"id":"65f0c3a112ae30237b17df15","status":"processed","os":"ios","size":0}]}}`, 2},
		{200, "", `{"status":true,"data":{"items":[{"id":"65f0c3a112ae30237b17df16","status":"processed","buildPlatform":"macos","originalExtension":".DMG"}]}}`, 2},
		{200, "", `{"status":true,"data":{"token":"t","expiresAt":"2026-01-01T00:00:00Z"}}`, 0},
		{200, "", `{"status":false,"error":{"code":5014,"message":"not processed"}}`, 1},
		{200, "", `{"status":true,"error":{"code":"3001"}}`, 0},
		{200, "", `{"status":true,"data":null}`, 1},
		{200, "", `{"status":true}`, 2},
		{200, "", `<html>proxy</html>`, 1},
		{204, "", ``, 0},
		{200, "", `null`, 0},
		{404, "", `{"status":false,"error":{"code":3001,"message":"Entity not found"}}`, 1},
		{401, "", `{"status":false,"error":{"code":4005,"message":"Token expired"}}`, 0},
		{429, "7", `{"status":false,"error":{"code":5003}}`, 2},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", `<html><body>Service Unavailable</body></html>`, 1},
		{500, "99999999999999999999999", `{"status":true,"data":{}}`, 1},
		{302, "", `{"status":true,"data":{"items":[]}}`, 2},
		{0, "", ``, 0},
		{-1, "x", "\xff\xfe", 1},
	}
	for _, s := range seeds {
		f.Add(s.status, s.ra, []byte(s.body), s.mode)
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, mode uint8) {
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header["Retry-After"] = []string{retryAfter}
		var out any
		var one *Build
		var list *page[Build]
		switch mode % 3 {
		case 1:
			one = new(Build)
			out = one
		case 2:
			list = new(page[Build])
			out = list
		}
		err := decodeEnvelope("op", resp, body, out)
		if err != nil {
			_ = err.Error()
		}
		var e *Error
		isErr := errors.As(err, &e)
		if retry := status == 429 || status >= 500 && status <= 599; Temporary(err) != retry {
			t.Fatalf("HTTP %d gave %v, temporary %v; only 5xx and 429 are worth retrying", status, err, !retry)
		}
		if status < 200 || status > 299 {
			if !isErr {
				t.Fatalf("HTTP %d gave %v (%T), want an *Error", status, err, err)
			}
			if e.StatusCode != status || e.RetryAfter < 0 || e.Op != "op" {
				t.Fatalf("HTTP %d gave %+v", status, e)
			}
			return
		}

		var env envelope
		if jerr := json.Unmarshal(body, &env); jerr != nil {
			if err == nil || isErr {
				t.Fatalf("2xx with a body that is no envelope gave %v (%T), want a plain error", err, err)
			}
			return
		}
		if env.Error != nil || (env.Status != nil && !*env.Status) {
			if !isErr || e.StatusCode != 0 {
				t.Fatalf("a failure envelope on a 2xx gave %v (%T), want an *Error with status 0", err, err)
			}
			if env.Error != nil && e.Code != int(env.Error.Code.Value) {
				t.Fatalf("code %d, want %d", e.Code, env.Error.Code.Value)
			}
			return
		}
		if isErr {
			t.Fatalf("a success envelope gave an *Error: %v", err)
		}
		if out == nil {
			if err != nil {
				t.Fatalf("a success envelope without data wanted gave %v", err)
			}
			return
		}
		if len(env.Data) == 0 || string(env.Data) == "null" {
			if err == nil {
				t.Fatal("a success envelope without data decoded")
			}
			return
		}
		if err != nil {
			return // data of another shape
		}
		var builds []Build
		if one != nil {
			builds = []Build{*one}
		} else {
			builds = list.Items
		}
		for i := range builds {
			checkArtifacts(t, &builds[i])
		}
		checkNames(t, builds, NameBuilds(builds))
	})
}

// FuzzLooseTypes decodes any bytes as FlexInt, FlexString and Uploader,
// both directly and through encoding/json.
func FuzzLooseTypes(f *testing.F) {
	for _, s := range []string{
		`123`, `"123"`, `" 42 "`, `""`, `null`, ` null `, `1.5e3`, `"1.5e3"`, `-7`, `"-7"`, `-0.5`, `0`,
		`9223372036854775807`, `9223372036854775808`, `1e19`, `"1e300"`, `"NaN"`, `"Inf"`, `"-Inf"`, `"0x10"`,
		`"abc"`, `true`, `{}`, `[]`, `[1,2]`, `"\u0031\u0032"`, `"a\"b"`,
		`"ci@example.com"`, `"Jane Doe"`, `{"id":"5e0","email":"ci@example.com","name":"CI"}`,
		`{"id":5,"email":null}`, `{"name":{"first":"Jane"}}`, `{"email":["a","b"]}`, `{"id":"x"} `,
		`{`, `"unterminated`, "\"\xff\"", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := json.Valid(b)
		trimmed := bytes.TrimSpace(b)
		var str string
		isString := len(trimmed) > 0 && trimmed[0] == '"' && json.Unmarshal(trimmed, &str) == nil
		isNull := string(trimmed) == "null"

		// FlexInt: a number or a string holding one, never a made-up value.
		var fi FlexInt
		err := fi.UnmarshalJSON(b)
		if err == nil {
			checkFlexInt(t, trimmed, isString, str, fi)
		}
		if valid {
			var viaJSON FlexInt
			if jerr := json.Unmarshal(b, &viaJSON); (jerr == nil) != (err == nil) || viaJSON != fi {
				t.Fatalf("FlexInt %q: direct %+v, %v; through json %+v, %v", b, fi, err, viaJSON, jerr)
			}
		}

		// FlexString: any JSON value decodes; a string to itself, anything
		// else to its text.
		var fs FlexString
		err = fs.UnmarshalJSON(b)
		switch {
		case valid && err != nil:
			t.Fatalf("FlexString %q failed: %v", b, err)
		case err != nil:
		case isNull:
			if fs != "" {
				t.Fatalf("FlexString null = %q", fs)
			}
		case isString:
			if string(fs) != str {
				t.Fatalf("FlexString %q = %q, want %q", b, fs, str)
			}
		case valid && string(fs) != string(trimmed):
			t.Fatalf("FlexString %q = %q, want its text", b, fs)
		}
		if valid {
			var viaJSON FlexString
			if jerr := json.Unmarshal(b, &viaJSON); jerr != nil || viaJSON != fs {
				t.Fatalf("FlexString %q: direct %q; through json %q, %v", b, fs, viaJSON, jerr)
			}
		}

		// Uploader: a string or an object; no valid JSON fails the build
		// that carries it.
		var u Uploader
		err = u.UnmarshalJSON(b)
		if valid && err != nil {
			t.Fatalf("Uploader %q failed: %v", b, err)
		}
		if err == nil && isString && u.String() != str {
			t.Fatalf("Uploader %q reads as %q, want %q", b, u.String(), str)
		}
		if err == nil && isNull && u != (Uploader{}) {
			t.Fatalf("Uploader null = %+v", u)
		}
		if valid {
			var viaJSON Uploader
			if jerr := json.Unmarshal(b, &viaJSON); jerr != nil || viaJSON != u {
				t.Fatalf("Uploader %q: direct %+v; through json %+v, %v", b, u, viaJSON, jerr)
			}
			var inBuild Build
			if jerr := json.Unmarshal([]byte(`{"uploadedBy":`+string(b)+`}`), &inBuild); jerr != nil {
				t.Fatalf("a build with uploadedBy %q failed to decode: %v", b, jerr)
			}
		}
	})
}

// checkFlexInt checks a FlexInt decoded without error from trimmed.
func checkFlexInt(t *testing.T, trimmed []byte, isString bool, str string, fi FlexInt) {
	t.Helper()
	text := string(trimmed)
	if isString {
		text = strings.TrimSpace(str)
	}
	if !fi.Valid {
		if fi.Value != 0 || (text != "null" && text != "") {
			t.Fatalf("FlexInt %q = %+v: invalid only for null or an empty string", trimmed, fi)
		}
		return
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		if fi.Value != n {
			t.Fatalf("FlexInt %q = %d, want %d", trimmed, fi.Value, n)
		}
	} else {
		// Anything but an integer is a float naming a byte count: in range,
		// truncated, never NaN, infinite or negative.
		fl, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || !(fl >= 0 && fl < math.MaxInt64) || float64(fi.Value) != math.Trunc(fl) {
			t.Fatalf("FlexInt %q = %d, but it is no byte count (%v, %v)", trimmed, fi.Value, fl, ferr)
		}
	}
	m, err := fi.MarshalJSON()
	var back FlexInt
	if err != nil || back.UnmarshalJSON(m) != nil || back != fi {
		t.Fatalf("FlexInt %+v marshals to %s, which reads back as %+v", fi, m, back)
	}
}

// FuzzArtifacts builds a build from its parts and checks what it offers:
// file names that are single path names, distinct, with a plain extension;
// sizes that are either unknown (-1) or a positive size the API gave.
func FuzzArtifacts(f *testing.F) {
	// flags: 1 package file, 2 original file, 4 build size valid,
	// 8 package size valid, 16 original size valid.
	f.Add("processed", "android", "", "", "app.apk", "", "ab", "", int64(0), int64(1234), int64(0), uint8(1|8))
	f.Add("processed", "android", "", "aab", "app.apk", "app.aab", "ab", "cd", int64(5), int64(1234), int64(99), uint8(31))
	f.Add("processed", "", "Android", "", "", "bundle.AAB", "", "cd", int64(0), int64(0), int64(99), uint8(2|16))
	f.Add("processed", "ios", "ios", "ipa", "App.ipa", "", "ab", "", int64(-5), int64(0), int64(0), uint8(1|4|8))
	f.Add("processed", "macos", "macos", ".DMG", "App.dmg", "", "", "", int64(77), int64(-1), int64(0), uint8(1|4|8))
	f.Add("processed", "macos", "", "", "x/../../etc.pkg", "", "", "", int64(0), int64(0), int64(0), uint8(1))
	f.Add("processed", "windows", "", "", "setup.exe", "", "ab", "", int64(0), int64(10), int64(0), uint8(1|8))
	f.Add("processed", "linux", "", " .tar.gz ", "", "", "", "", int64(0), int64(0), int64(0), uint8(0))
	f.Add("processed", "", "", "a/b", "x.\x00", "", "", "", int64(0), int64(0), int64(0), uint8(1))
	f.Add("processed", "", "", "..", "", "", "", "", int64(0), int64(0), int64(0), uint8(0))
	f.Add("processed", "", "", "verylongextension1", "", "", "", "", int64(0), int64(0), int64(0), uint8(0))
	f.Add("pending", "android", "", "", "app.apk", "", "", "", int64(0), int64(10), int64(0), uint8(1|8))
	f.Add("error", "ios", "", "", "", "", "", "", int64(0), int64(0), int64(0), uint8(0))
	f.Fuzz(func(t *testing.T, status, osName, platform, origExt, pkgName, origName, pkgSum, origSum string,
		size, pkgSize, origSize int64, flags uint8) {
		b := &Build{Status: status, OS: osName, BuildPlatform: platform, OriginalExtension: origExt,
			Size: FlexInt{Value: size, Valid: flags&4 != 0}}
		if !b.Size.Valid {
			b.Size.Value = 0
		}
		if flags&1 != 0 {
			var p BuildFile
			p.Type = "package"
			p.File.OriginalName, p.File.Checksum = pkgName, pkgSum
			p.File.Size = FlexInt{Value: pkgSize, Valid: flags&8 != 0}
			b.Files = append(b.Files, p)
		}
		if flags&2 != 0 {
			var o BuildFile
			o.Type = "original"
			o.File.OriginalName, o.File.Checksum = origName, origSum
			o.File.Size = FlexInt{Value: origSize, Valid: flags&16 != 0}
			b.Files = append(b.Files, o)
		}
		checkArtifacts(t, b)
	})
}

// checkArtifacts checks the artifacts of b as a build directory uses them:
// "<type>.<ext>" files beside "<type>" links and info.json.
func checkArtifacts(t *testing.T, b *Build) {
	t.Helper()
	arts := b.Artifacts()
	if b.Status != StatusProcessed {
		if len(arts) != 0 {
			t.Fatalf("a %q build offers %+v", b.Status, arts)
		}
		return
	}
	if len(arts) == 0 {
		t.Fatalf("a processed build offers nothing: %+v", b)
	}
	known := map[int64]bool{}
	if b.Size.Valid {
		known[b.Size.Value] = true
	}
	for _, fl := range b.Files {
		if fl.File.Size.Valid {
			known[fl.File.Size.Value] = true
		}
	}
	names := map[string]bool{"info.json": true}
	for _, a := range arts {
		if a.Type != Auto && a.Type != File && a.Type != AAB {
			t.Fatalf("artifact of unknown type %q", a.Type)
		}
		if a.Ext == "" || len(a.Ext) > 16 || strings.Trim(a.Ext, "abcdefghijklmnopqrstuvwxyz0123456789.") != "" {
			t.Fatalf("artifact extension %q is not a plain extension", a.Ext)
		}
		name := string(a.Type) + "." + a.Ext
		for _, n := range []string{name, string(a.Type)} {
			if !IsFileName(n) || names[n] {
				t.Fatalf("artifact name %q is not a file name or collides; artifacts %+v", n, arts)
			}
			names[n] = true
		}
		if a.Size != -1 && (a.Size <= 0 || !known[a.Size]) {
			t.Fatalf("artifact %s has size %d, want -1 or a positive size the API gave", name, a.Size)
		}
		if a.Checksum != "" && a.Size <= 0 {
			t.Fatalf("artifact %s has a checksum but no size", name)
		}
		if a.Type == Auto && a.Ext == "plist" && a.Size != -1 {
			t.Fatalf("an OTA manifest has size %d", a.Size)
		}
	}
	if again := b.Artifacts(); !reflect.DeepEqual(again, arts) {
		t.Fatalf("artifacts changed between calls: %+v, then %+v", arts, again)
	}
}

// FuzzNameBuilds names builds decoded from a compact text form and checks
// IsFileName against its definition, then the names: file names only, no two in one directory alike, each naming a
// processed build with a build id, the newest one that claims it.
//
// Each line is one build, tab-separated: id, status, versionName,
// versionCode, comma-separated tags, createdAt. An id of at most 4 bytes
// stands for the build id made of its hex (so equal short ids give one
// id), a status of "p" for processed, and createdAt is minutes past a fixed
// time (anything else: the zero time).
func FuzzNameBuilds(f *testing.F) {
	for _, s := range []string{
		"1\tp\t2.4.0\t240\tqa\t60\n2\tp\t2.4.0\t241\tqa,qa,release\t180\n3\tpending\t2.5.0\t\tqa\t300\n" +
			"4\tp\tv/2\t\t..,a/b,\t120\nnot-an-id\tp\t9.9\t\t\t540\n5\tp\t2.4.0+241\t\t\t240",
		"1\tp\t1.0\t1\tqa\t5\n1\tp\t1.0\t1\tqa\t5",                // one build listed twice (a page boundary shifted)
		"1\tp\t1.0\t\tqa\t5\n1\tp\t1.0\t\t\t9",                    // one id, two states
		"a\tp\t1.0\t\tx\t5\nb\tp\t1.0\t\tx\t5\nc\tp\t1.0\t\tx\t5", // ties broken by id
		"65f0c3a112ae30237b17df14\tp\t.\t.\t.\t1",
		"65F0C3A112AE30237B17DF14\tp\t1\t+\t+\t1\n65f0c3a112ae30237b17df14\tp\t1+\t\t+,latest\t1",
		"1\tp\t\t7\tlatest\tx",
		"1\tp\tv\x00\t1\tt\x00,u\t1",
		"1\tp\t" + strings.Repeat("x", 253) + "\t12\t" + strings.Repeat("y", 255) + "," + strings.Repeat("z", 256) + "\t1",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		builds := parseBuildLines(s)
		for _, b := range builds {
			for _, name := range append([]string{b.VersionName, b.VersionName + "+" + string(b.VersionCode)}, b.Tags...) {
				// One name of a path: not empty, not . or .., no / or NUL, at most 255 bytes.
				want := name != "" && name != "." && name != ".." && len(name) <= 255 && strings.IndexByte(name, '/') < 0 && strings.IndexByte(name, 0) < 0
				if got := IsFileName(name); got != want {
					t.Fatalf("IsFileName(%q) = %v, want %v", name, got, want)
				}
			}
		}
		checkNames(t, builds, NameBuilds(builds))
	})
}

func parseBuildLines(s string) []Build {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var builds []Build
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		fields := append(strings.Split(line, "\t"), "", "", "", "", "", "")
		b := Build{ID: fields[0], Status: fields[1], VersionName: fields[2], VersionCode: FlexString(fields[3])}
		if len(b.ID) <= 4 {
			b.ID = fmt.Sprintf("%024s", hex.EncodeToString([]byte(b.ID)))
		}
		if b.Status == "p" {
			b.Status = StatusProcessed
		}
		if fields[4] != "" {
			b.Tags = strings.Split(fields[4], ",")
		}
		if m, err := strconv.Atoi(fields[5]); err == nil {
			b.CreatedAt = base.Add(time.Duration(m) * time.Minute)
		}
		builds = append(builds, b)
	}
	return builds
}

// checkNames checks n = NameBuilds(builds).
func checkNames(t *testing.T, builds []Build, n BuildNames) {
	t.Helper()
	newer := func(a, b *Build) bool {
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID > b.ID
	}
	// A build id names one build: of the processed builds listed with one
	// id (a listing whose pages shifted), the first stands for it, as in
	// the app's directory (fs.listApp).
	rep := map[string]*Build{}
	for i := range builds {
		b := &builds[i]
		if b.Status == StatusProcessed && IsBuildID(b.ID) && rep[b.ID] == nil {
			rep[b.ID] = b
		}
	}
	isRep := func(what string, b *Build) {
		t.Helper()
		if b == nil || b.Status != StatusProcessed || !IsBuildID(b.ID) || rep[b.ID] != b {
			t.Fatalf("%s names %+v: not a processed build with an id, or not the one copy of it", what, b)
		}
	}
	claims := func(b *Build) []string {
		var c []string
		if b.VersionName != "" {
			c = append(c, b.VersionName)
			if b.VersionCode != "" {
				c = append(c, b.VersionName+"+"+string(b.VersionCode))
			}
		}
		return c
	}

	// The app directory: latest.
	if len(rep) == 0 {
		if n.Latest != nil || len(n.Versions) != 0 || len(n.Tags) != 0 {
			t.Fatalf("no processed builds, yet names %+v", n)
		}
		return
	}
	isRep("latest", n.Latest)
	for _, b := range rep {
		if newer(b, n.Latest) {
			t.Fatalf("latest is %s, but %s is newer", n.Latest.ID, b.ID)
		}
	}

	// versions/: each name is claimed by the build it names, and by no newer one.
	for name, b := range n.Versions {
		isRep("versions/"+name, b)
		if !IsFileName(name) {
			t.Fatalf("versions/%q is not a file name", name)
		}
		found := false
		for _, c := range claims(b) {
			found = found || c == name
		}
		if !found {
			t.Fatalf("versions/%q names build %s, which does not claim it", name, b.ID)
		}
	}
	for _, b := range rep {
		for _, c := range claims(b) {
			if !IsFileName(c) {
				if _, ok := n.Versions[c]; ok {
					t.Fatalf("versions/%q exists", c)
				}
				continue
			}
			got := n.Versions[c]
			if got == nil || newer(b, got) {
				t.Fatalf("versions/%q is %v, but build %s claims it", c, got, b.ID)
			}
		}
	}

	// tags/ and tags/<tag>/: latest and one link per build id.
	for tag, tagged := range n.Tags {
		if !IsFileName(tag) || len(tagged) == 0 {
			t.Fatalf("tags/%q: not a file name, or empty", tag)
		}
		ids := map[string]bool{"latest": true}
		for i, b := range tagged {
			isRep("tags/"+tag, b)
			if ids[b.ID] {
				t.Fatalf("tags/%s/%s appears twice", tag, b.ID)
			}
			ids[b.ID] = true
			carries := false
			for _, bt := range b.Tags {
				carries = carries || bt == tag
			}
			if !carries {
				t.Fatalf("tags/%s lists %s, which does not carry it", tag, b.ID)
			}
			if i > 0 && !newer(tagged[i-1], b) {
				t.Fatalf("tags/%s is not newest first", tag)
			}
		}
	}
	for _, b := range rep {
		for _, tag := range b.Tags {
			if !IsFileName(tag) {
				if _, ok := n.Tags[tag]; ok {
					t.Fatalf("tags/%q exists", tag)
				}
				continue
			}
			listed := false
			for _, x := range n.Tags[tag] {
				listed = listed || x == b
			}
			if !listed {
				t.Fatalf("build %s carries tag %q but tags/%s does not list it", b.ID, tag, tag)
			}
		}
	}
}

// FuzzParseContentRange checks that an accepted Content-Range describes a
// real range: 0 <= start <= end < total, total unknown (-1) only for a
// range, or the 416 form (-1, -1, total >= 0); and that the canonical
// spelling of what was accepted reads back the same.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-99/1000", "bytes 999-999/1000", "bytes 0-0/1", "bytes 100-199/*", "  bytes 5-9/10\t",
		"bytes */1000", "bytes */0", "bytes */*", "bytes 4294967296-4294967395/8589934592",
		"", "0-99/1000", "items 0-99/1000", "bytes0-99/1000", "bytes 0-99", "bytes 0-99/", "bytes 0-99/-1",
		"bytes 0-99/lots", "bytes 0-99/100/100", "bytes 99/1000", "bytes 0-/1000", "bytes -500/1000",
		"bytes 10-5/1000", "bytes 0-1000/1000", "bytes 0-0/0", "bytes 99999999999999999999-1/*",
		"bytes 0 - 99/1000", "bytes +0-+9/+10", "bytes 0-9223372036854775806/9223372036854775807",
		"bytes 9223372036854775807-9223372036854775807/*", "bytes -0-5/10", "bytes */-0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, end, total, ok := parseContentRange(h)
		if !ok {
			if start != 0 || end != 0 || total != 0 {
				t.Fatalf("parseContentRange(%q) rejected it but gave %d, %d, %d", h, start, end, total)
			}
			return
		}
		var canon string
		switch {
		case start == -1 && end == -1 && total >= 0:
			canon = fmt.Sprintf("bytes */%d", total)
		case 0 <= start && start <= end && (total == -1 || end < total):
			tot := "*"
			if total >= 0 {
				tot = strconv.FormatInt(total, 10)
			}
			canon = fmt.Sprintf("bytes %d-%d/%s", start, end, tot)
		default:
			t.Fatalf("parseContentRange(%q) = %d, %d, %d: not a range of an object", h, start, end, total)
		}
		if total == -1 && !strings.HasSuffix(strings.TrimSpace(h), "/*") {
			t.Fatalf("parseContentRange(%q): unknown total without a *", h)
		}
		s2, e2, t2, ok2 := parseContentRange(canon)
		if !ok2 || s2 != start || e2 != end || t2 != total {
			t.Fatalf("parseContentRange(%q) = %d, %d, %d; its canonical form %q reads %d, %d, %d, %v",
				h, start, end, total, canon, s2, e2, t2, ok2)
		}
	})
}

// FuzzParseRetryAfter checks Retry-After against RFC 9110: delay-seconds
// (digits only; past the largest Duration it is the largest Duration) or
// an HTTP-date; anything else, or a date in the past, is no delay.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{
		"", "0", "7", " 120 ", "007", "1.5", "7s", "-1", "+5", "1_000", "0x10",
		"9223372036", "9223372037", "18446744073709551615", "18446744073709551616", "99999999999999999999999",
		"99999999999999999999x", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 2100 23:59:59 GMT",
		"Friday, 31-Dec-99 23:59:59 GMT", "Fri Dec 31 23:59:59 2100", "\t5\n", "٣",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		s := strings.TrimSpace(h)
		date, dateErr := http.ParseTime(s)
		before := time.Until(date)
		d := parseRetryAfter(h)
		after := time.Until(date)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v", h, d)
		}
		if s != "" && strings.Trim(s, "0123456789") == "" {
			want := maxDuration
			if n, err := strconv.ParseUint(s, 10, 64); err == nil && n <= uint64(maxDuration/time.Second) {
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Fatalf("parseRetryAfter(%q) = %v, want %v", h, d, want)
			}
			return
		}
		if dateErr != nil {
			if d != 0 {
				t.Fatalf("parseRetryAfter(%q) = %v, want 0 for what is neither seconds nor a date", h, d)
			}
			return
		}
		if (before <= 0 && d != 0) || (d != 0 && (d > before || d < after)) {
			t.Fatalf("parseRetryAfter(%q) = %v, want the time until %v", h, d, date)
		}
	})
}

// FuzzURLExpired checks which storage answers count as an expired URL
// (mint again) rather than a failure or a blip (retry the same URL).
func FuzzURLExpired(f *testing.F) {
	for _, c := range []struct {
		status int
		msg    string
	}{
		{401, ""}, {403, "Request has expired"}, {410, ""}, {400, "<Code>ExpiredToken</Code>"}, {400, "URL EXPIRED"},
		{400, "InvalidRange"}, {404, "expired"}, {429, ""}, {503, "expired"}, {0, "expired"}, {200, ""}, {400, "EXPİRED"},
	} {
		for wrap := uint8(0); wrap < 4; wrap++ {
			f.Add(c.status, c.msg, wrap)
		}
	}
	f.Fuzz(func(t *testing.T, status int, msg string, wrap uint8) {
		e := &Error{Op: "storage read", StatusCode: status, Message: msg}
		var err error = e
		isErr := true
		switch wrap % 4 {
		case 1:
			err = fmt.Errorf("read: %w", e)
		case 2:
			err, isErr = fmt.Errorf("read: %v", e), false // the text of one is not one
		case 3:
			err = errors.Join(errors.New("other"), e)
		}
		want := isErr && (status == 401 || status == 403 || status == 410 ||
			status == 400 && strings.Contains(strings.ToLower(msg), "expired"))
		got := urlExpired(err)
		if got != want {
			t.Fatalf("urlExpired(%v) = %v, want %v", err, got, want)
		}
		if got && Temporary(err) {
			t.Fatalf("%v is both an expired URL and temporary", err)
		}
	})
}
