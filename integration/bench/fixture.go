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

// fixture is the emulator serving the sample data plus one large .ipa.
type fixture struct {
	emu     *emulator.Server
	buildID string
	data    []byte
	client  *http.Client // for the API calls the bench makes itself
}

// startFixture generates the .ipa and serves it with the sample data.
func startFixture(size int64, entries int) (*fixture, error) {
	data := emulator.GenerateIPA(size, entries, ipaSeed)
	ds := emulator.SampleData()
	b := &emulator.Build{
		Status: "processed", OS: "ios", BuildPlatform: "ios",
		VersionName: "9.0.0", VersionCode: "900", OriginalExtension: "ipa",
		CreatedAt:   time.Now().UTC().Truncate(time.Second),
		Changelog:   "benchmark build",
		PackageName: "com.example.generated", MinOS: "15.0",
		Objects: map[string]*emulator.Object{"file": {Name: ipaName, Data: data}},
	}
	if err := ds.AddBuild(benchOrg, benchApp, b); err != nil {
		return nil, err
	}
	emu, err := emulator.Start(emulator.Options{Data: ds})
	if err != nil {
		return nil, err
	}
	fx := &fixture{emu: emu, buildID: b.ID, data: data, client: &http.Client{Timeout: time.Minute}}
	// The first listing of the build computes the file's checksum; pay
	// for it now rather than in the first timed figure.
	if err := fx.warmUp(); err != nil {
		emu.Close()
		return nil, err
	}
	return fx, nil
}

func (fx *fixture) size() int64 { return int64(len(fx.data)) }

// mountPath is the .ipa's path inside an appliveryfs mount.
func (fx *fixture) mountPath() string {
	return benchOrg + "/" + benchApp + "/" + fx.buildID + "/file.ipa"
}

func (fx *fixture) buildURL() string {
	return fx.emu.APIURL() + "/v1/organizations/" + benchOrg + "/apps/" + benchApp + "/builds/" + fx.buildID
}

func (fx *fixture) warmUp() error {
	var v json.RawMessage
	if err := fx.apiGet(fx.client, fx.buildURL(), &v); err != nil {
		return fmt.Errorf("warm up the emulator: %w", err)
	}
	return nil
}

// mint asks the API for a download token of the build's file.
func (fx *fixture) mint(c *http.Client) (string, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := fx.apiGet(c, fx.buildURL()+"/downloadToken?type=file", &tok); err != nil {
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

// curlDownload mints a token and downloads the file with curl -L through
// the download host's redirect; the time covers both.
func (fx *fixture) curlDownload() (elapsed, cpu time.Duration, err error) {
	start := time.Now()
	token, err := fx.mint(fx.client)
	if err != nil {
		return 0, 0, err
	}
	if _, cpu, err = curlGet(fx.downloadURL(token), fx.size()); err != nil {
		return 0, 0, err
	}
	return time.Since(start), cpu, nil
}

// directHead is the baseline of the time to first byte: mint a token,
// resolve it to the storage URL, and fetch the first bytes with one Range
// request, all on new connections as a fresh mount has.
func (fx *fixture) directHead() (time.Duration, error) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{
		Transport:     tr,
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	token, err := fx.mint(c)
	if err != nil {
		return 0, err
	}
	storageURL, err := resolve(c, fx.downloadURL(token))
	if err != nil {
		return 0, err
	}
	head, err := getRange(c, storageURL, headBytes)
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(head, fx.data[:headBytes]) {
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

// writeLocalCopy writes the .ipa to path, the baseline of cached reads.
func (fx *fixture) writeLocalCopy(path string) error {
	if err := os.WriteFile(path, fx.data, 0o644); err != nil {
		return fmt.Errorf("write local copy: %w", err)
	}
	return nil
}
