package api

import (
	"testing"
	"time"
)

func TestIsFileName(t *testing.T) {
	for name, want := range map[string]bool{"acme": true, "2.4.0+240": true, "": false, ".": false, "..": false,
		"a/b": false, "a\x00": false, "...": true, string(make([]byte, 256)): false} {
		if got := IsFileName(name); got != want {
			t.Errorf("IsFileName(%q) = %v", name, got)
		}
	}
}

func TestNameBuilds(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC) }
	builds := []Build{
		{ID: "000000000000000000000001", Status: StatusProcessed, VersionName: "2.4.0", VersionCode: "240", CreatedAt: at(1), Tags: []string{"qa"}},
		{ID: "000000000000000000000002", Status: StatusProcessed, VersionName: "2.4.0", VersionCode: "241", CreatedAt: at(3), Tags: []string{"qa", "qa", "release"}},
		{ID: "000000000000000000000003", Status: "pending", VersionName: "2.5.0", CreatedAt: at(5), Tags: []string{"qa"}},
		{ID: "000000000000000000000004", Status: StatusProcessed, VersionName: "v/2", CreatedAt: at(2), Tags: []string{"..", "a/b", ""}},
		{ID: "not-an-id", Status: StatusProcessed, VersionName: "9.9", CreatedAt: at(9)},
		{ID: "000000000000000000000005", Status: StatusProcessed, VersionName: "2.4.0+241", CreatedAt: at(4)},
	}
	n := NameBuilds(builds)
	if n.Latest == nil || n.Latest.ID != "000000000000000000000005" {
		t.Errorf("latest = %v, want the newest processed build", n.Latest)
	}
	want := map[string]string{
		"2.4.0":     "000000000000000000000002", // the newer of two
		"2.4.0+240": "000000000000000000000001",
		"2.4.0+241": "000000000000000000000005", // a literal name, newer than the derived one
	}
	if len(n.Versions) != len(want) {
		t.Errorf("versions = %v, want %v", n.Versions, want)
	}
	for name, id := range want {
		if b := n.Versions[name]; b == nil || b.ID != id {
			t.Errorf("versions[%q] = %v, want %s", name, b, id)
		}
	}
	if qa := n.Tags["qa"]; len(qa) != 2 || qa[0].ID != "000000000000000000000002" || qa[1].ID != "000000000000000000000001" {
		t.Errorf("tags[qa] = %v, want builds 2 then 1 (newest first, once each, processed only)", qa)
	}
	if len(n.Tags) != 2 {
		t.Errorf("tags = %v, want qa and release only", n.Tags)
	}
	if empty := NameBuilds(nil); empty.Latest != nil || len(empty.Versions) != 0 {
		t.Errorf("no builds: %+v", empty)
	}
}
