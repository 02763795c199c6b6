//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// Where the benchmark build lives in the sample data.
const (
	benchOrg  = "acme"
	benchApp  = "field-ios"
	ipaSeed   = 20261001
	ipaName   = "Bench.ipa"
	headBytes = 4 << 10 // the read of the time-to-first-byte figure
)

// ipaFile is one generated .ipa, the file of one build.
type ipaFile struct {
	nominal int64 // the size asked for; the zip comes out a few KiB short of it
	buildID string
	data    []byte
}

func (f *ipaFile) size() int64 { return int64(len(f.data)) }

// name is its nominal size, e.g. "64 MiB", as the table names it.
func (f *ipaFile) name() string { return humanBytes(f.nominal) }

// mountPath is the .ipa's path inside an appliveryfs mount.
func (f *ipaFile) mountPath() string {
	return benchOrg + "/" + benchApp + "/" + f.buildID + "/file.ipa"
}

// fixture is the emulator serving the sample data plus one large .ipa per
// size measured, each as its own build.
type fixture struct {
	emu    *emulator.Server
	main   *ipaFile           // of --size: what every figure but the cold copies at --sizes reads
	bySize map[int64]*ipaFile // every .ipa served by nominal size, main included
	client *http.Client       // for the API calls the bench makes itself
}

// startFixture generates an .ipa of each size, main first, and serves
// them with the sample data.
func startFixture(main int64, others []int64, entries int) (*fixture, error) {
	ds := emulator.SampleData()
	fx := &fixture{bySize: map[int64]*ipaFile{}, client: &http.Client{Timeout: time.Minute}}
	for i, size := range append([]int64{main}, others...) {
		if fx.bySize[size] != nil {
			continue
		}
		f, err := addIPA(ds, size, entries, i)
		if err != nil {
			return nil, err
		}
		fx.bySize[size] = f
	}
	fx.main = fx.bySize[main]
	emu, err := emulator.Start(emulator.Options{Data: ds})
	if err != nil {
		return nil, err
	}
	fx.emu = emu
	// The first listing of a build computes its file's checksum; pay for
	// it now rather than in the first timed figure.
	for _, f := range fx.bySize {
		if err := fx.warmUp(f); err != nil {
			emu.Close()
			return nil, err
		}
	}
	return fx, nil
}

// addIPA generates an .ipa of size bytes and adds it to ds as the file of
// a new build; n numbers the build's version.
func addIPA(ds *emulator.Dataset, size int64, entries, n int) (*ipaFile, error) {
	f := &ipaFile{nominal: size, data: emulator.GenerateIPA(size, entries, ipaSeed)}
	b := &emulator.Build{
		Status: "processed", OS: "ios", BuildPlatform: "ios",
		VersionName: fmt.Sprintf("9.0.%d", n), VersionCode: fmt.Sprint(900 + n), OriginalExtension: "ipa",
		CreatedAt:   time.Now().UTC().Truncate(time.Second),
		Changelog:   "benchmark build of " + humanBytes(size),
		PackageName: "com.example.generated", MinOS: "15.0",
		Objects: map[string]*emulator.Object{"file": {Name: ipaName, Data: f.data}},
	}
	if err := ds.AddBuild(benchOrg, benchApp, b); err != nil {
		return nil, fmt.Errorf("add the %s build: %w", humanBytes(size), err)
	}
	f.buildID = b.ID
	return f, nil
}

func (fx *fixture) buildURL(f *ipaFile) string {
	return fx.emu.APIURL() + "/v1/organizations/" + benchOrg + "/apps/" + benchApp + "/builds/" + f.buildID
}

func (fx *fixture) warmUp(f *ipaFile) error {
	var v json.RawMessage
	if err := fx.apiGet(fx.client, fx.buildURL(f), &v); err != nil {
		return fmt.Errorf("warm up the emulator: %w", err)
	}
	return nil
}

// mint asks the API for a download token of f.
func (fx *fixture) mint(c *http.Client, f *ipaFile) (string, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := fx.apiGet(c, fx.buildURL(f)+"/downloadToken?type=file", &tok); err != nil {
		return "", fmt.Errorf("mint a download token: %w", err)
	}
	if tok.Token == "" {
		return "", fmt.Errorf("mint a download token: empty token")
	}
	return tok.Token, nil
}

// downloadURL is the download host's URL for a token; it redirects to
// storage.
func (fx *fixture) downloadURL(token string) string {
	return fx.emu.DownloadURL() + "/v1/download/" + url.PathEscape(token)
}

// apiGet GETs an API URL with the service-account token and decodes the
// data of the response envelope into v.
func (fx *fixture) apiGet(c *http.Client, u string, v any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+fx.emu.Token())
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: decode: %w", u, err)
	}
	return json.Unmarshal(env.Data, v)
}

// curlDownload mints a token and downloads f with curl -L through the
// download host's redirect; the time covers both.
func (fx *fixture) curlDownload(f *ipaFile) (elapsed, cpu time.Duration, err error) {
	start := time.Now()
	token, err := fx.mint(fx.client, f)
	if err != nil {
		return 0, 0, err
	}
	if _, cpu, err = curlGet(fx.downloadURL(token), f.size()); err != nil {
		return 0, 0, err
	}
	return time.Since(start), cpu, nil
}

// aria2Download mints a token, resolves it to the signed storage URL and
// downloads f from there with the aria2c binary into dir (see aria2Get);
// the time covers all three. aria2c gets the storage URL rather than the
// download host's because the token is single-use: each of its
// connections would ask the download host again.
func (fx *fixture) aria2Download(aria2c string, f *ipaFile, dir string) (elapsed, cpu time.Duration, err error) {
	c, done := freshClient()
	defer done()
	start := time.Now()
	storageURL, err := fx.storageURL(c, f)
	if err != nil {
		return 0, 0, err
	}
	if cpu, err = aria2Get(aria2c, storageURL, dir, f.size()); err != nil {
		return 0, 0, err
	}
	return time.Since(start), cpu, nil
}

// freshClient is an HTTP client on new connections, as a fresh mount has,
// that does not follow redirects, so that resolve sees the 302. done
// closes its connections.
func freshClient() (c *http.Client, done func()) {
	tr := &http.Transport{}
	c = &http.Client{
		Transport:     tr,
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, tr.CloseIdleConnections
}

// storageURL mints a token for f and resolves it to the signed storage
// URL, the two requests a mount makes before its first storage read. c
// must not follow redirects.
func (fx *fixture) storageURL(c *http.Client, f *ipaFile) (string, error) {
	token, err := fx.mint(c, f)
	if err != nil {
		return "", err
	}
	return resolve(c, fx.downloadURL(token))
}

// directHead is the baseline of the time to first byte: mint a token,
// resolve it to the storage URL, and fetch the first bytes of the main
// .ipa with one Range request, all on new connections as a fresh mount
// has.
func (fx *fixture) directHead() (time.Duration, error) {
	c, done := freshClient()
	defer done()
	start := time.Now()
	storageURL, err := fx.storageURL(c, fx.main)
	if err != nil {
		return 0, err
	}
	head, err := getRange(c, storageURL, headBytes)
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(head, fx.main.data[:headBytes]) {
		return 0, fmt.Errorf("storage Range request: wrong bytes")
	}
	return elapsed, nil
}

// resolve follows nothing: it returns the Location of the download host's
// 302.
func resolve(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("GET %s: %s, want 302", u, resp.Status)
	}
	return resp.Header.Get("Location"), nil
}

// getRange fetches the first n bytes of u with a Range request.
func getRange(c *http.Client, u string, n int) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", n-1))
	body, err := runner.Fetch(c, req, http.StatusPartialContent)
	if err != nil {
		return nil, fmt.Errorf("storage Range request: %w", err)
	}
	return body, nil
}

// writeLocalCopy writes the main .ipa to path, the baseline of cached
// reads.
func (fx *fixture) writeLocalCopy(path string) error {
	if err := os.WriteFile(path, fx.main.data, 0o644); err != nil {
		return fmt.Errorf("write local copy: %w", err)
	}
	return nil
}
