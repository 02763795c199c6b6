//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// What the soak relies on, checked here rather than by a whole soak: the
// emulator's rate faults fail about the share of requests asked for, in
// both ways for storage, and the same way for the same seed; a hung copy
// does not hang the soak.

func TestStorageRate(t *testing.T) {
	emu, url := storageURL(t)
	const n, rate = 2000, 0.2
	first := storageOutcomes(t, emu, url, n, rate)
	var unavailable, cut int
	for _, o := range first {
		switch o {
		case "503":
			unavailable++
		case "cut":
			cut++
		}
	}
	// Each half is about n*rate/2 = 200; the bounds are over four
	// standard deviations away.
	for name, got := range map[string]int{"503": unavailable, "cut": cut} {
		if got < 140 || got > 260 {
			t.Errorf("%d of %d storage requests %s at StorageRate %v, want about %v", got, n, name, rate, n*rate/2)
		}
	}
	if again := storageOutcomes(t, emu, url, n, rate); !slices.Equal(first, again) {
		t.Errorf("the same seed failed different requests")
	}
}

func TestAPIRate(t *testing.T) {
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	const n, rate = 1000, 0.1
	emu.SetFaults(emulator.Faults{APIRate: rate})
	failed := 0
	for range n {
		resp := apiGet(t, emu, "/v1/organizations")
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			failed++
			if resp.Header.Get("Retry-After") != "" {
				t.Fatalf("rate fault with Retry-After %q", resp.Header.Get("Retry-After"))
			}
		case http.StatusOK:
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if failed < 60 || failed > 140 {
		t.Errorf("%d of %d API requests failed at APIRate %v", failed, n, rate)
	}
	// A counted fault still comes first and still runs out.
	emu.SetFaults(emulator.Faults{APIStatus: http.StatusTooManyRequests, APICount: 2, APIRate: 1})
	for i, want := range []int{429, 429, 503} {
		resp := apiGet(t, emu, "/v1/organizations")
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// storageOutcomes makes n ranged GETs of url under StorageRate rate,
// seeded afresh, and returns each one's outcome: "ok", "503" or "cut".
func storageOutcomes(t *testing.T, emu *emulator.Server, url string, n int, rate float64) []string {
	t.Helper()
	emu.SetFaults(emulator.Faults{StorageRate: rate, Seed: 42})
	defer emu.SetFaults(emulator.Faults{})
	var out []string
	for range n {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Range", "bytes=0-9999")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			out = append(out, "503")
		case resp.StatusCode == http.StatusPartialContent && errors.Is(err, io.ErrUnexpectedEOF) && len(body) < 10000:
			out = append(out, "cut")
		case resp.StatusCode == http.StatusPartialContent && err == nil && len(body) == 10000:
			out = append(out, "ok")
		default:
			t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
		}
	}
	return out
}

// storageURL starts an emulator and returns a signed storage URL of a
// sample build's file.
func storageURL(t *testing.T) (*emulator.Server, string) {
	t.Helper()
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	build := emu.Data().Orgs[1].Apps[0].Builds[0] // beta-labs/beta
	resp := apiGet(t, emu, fmt.Sprintf("/v1/organizations/beta-labs/apps/beta/builds/%s/downloadToken?type=file", build.ID))
	defer resp.Body.Close()
	var env struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || env.Data.Token == "" {
		t.Fatalf("downloadToken: %d, %v", resp.StatusCode, err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	dl, err := noRedirect.Get(emu.DownloadURL() + "/v1/download/" + env.Data.Token)
	if err != nil {
		t.Fatal(err)
	}
	dl.Body.Close()
	if dl.StatusCode != http.StatusFound {
		t.Fatalf("download host: %d", dl.StatusCode)
	}
	return emu, dl.Header.Get("Location")
}

func apiGet(t *testing.T, emu *emulator.Server, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, emu.APIURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+emu.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestGuardLeavesHungCopies: a copy that ignores its kill, as a tool
// asleep in the kernel on a wedged mount does, is reported as hung after
// the grace rather than waited for.
func TestGuardLeavesHungCopies(t *testing.T) {
	s := &soak{}
	o := outcome{t: &target{path: "x"}, at: time.Now(), firstBad: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	stuck := make(chan struct{})
	defer close(stuck)
	res, hung := s.guard(ctx, 50*time.Millisecond, o, func(started func(int64)) outcome {
		started(int64(os.Getpid()))
		<-stuck
		return o
	})
	if !hung || !strings.HasPrefix(res.err, "hung:") || !strings.Contains(res.err, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("hung %v, err %q", hung, res.err)
	}
	// One that ends within the grace is no hang, and its outcome counts.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	res, hung = s.guard(ctx2, time.Second, o, func(func(int64)) outcome {
		time.Sleep(20 * time.Millisecond)
		o.err = "timed out"
		return o
	})
	if hung || res.err != "timed out" {
		t.Fatalf("hung %v, err %q", hung, res.err)
	}
}
