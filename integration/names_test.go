//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// findBuild returns the sample build of app with the given version name.
func findBuild(t *testing.T, emu *emulator.Server, org, app, version string) *emulator.Build {
	t.Helper()
	for _, o := range emu.Data().Orgs {
		for _, a := range o.Apps {
			for _, b := range a.Builds {
				if o.Slug == org && a.Slug == app && b.VersionName == version {
					return b
				}
			}
		}
	}
	t.Fatalf("no build %s of %s/%s in the sample data", version, org, app)
	return nil
}

func readlink(t *testing.T, p string) string {
	t.Helper()
	target, err := os.Readlink(p)
	if err != nil {
		t.Errorf("readlink %s: %v", p, err)
	}
	return target
}

// TestVersionsAndTags: builds by version and by tag, as relative symlinks
// that cost no token, following edits after --dir-ttl.
func TestVersionsAndTags(t *testing.T) {
	emu := startEmulator(t, nil)
	const ttl = time.Second
	m := mount(t, emu, mountConfig{dirTTL: ttl})
	app := m.path("acme", "field-app")
	b240 := findBuild(t, emu, "acme", "field-app", "2.4.0") // tags qa, release
	b230 := findBuild(t, emu, "acme", "field-app", "2.3.0")

	if got := strings.Join(listDir(t, filepath.Join(app, "versions")), " "); got != "2.3.0 2.3.0+231 2.4.0 2.4.0+240" {
		t.Errorf("versions/ lists %q", got)
	}
	for name, want := range map[string]string{
		"versions/2.4.0": "../" + b240.ID, "versions/2.4.0+240": "../" + b240.ID, "versions/2.3.0+231": "../" + b230.ID,
		"tags/qa/latest": "../../" + b240.ID, "tags/qa/" + b240.ID: "../../" + b240.ID, "tags/release/latest": "../../" + b240.ID,
	} {
		checkMode(t, filepath.Join(app, name), os.ModeSymlink|0o777)
		if got := readlink(t, filepath.Join(app, name)); got != want {
			t.Errorf("%s -> %q, want %q", name, got, want)
		}
	}
	if got := strings.Join(listDir(t, filepath.Join(app, "tags")), " "); got != "qa release" {
		t.Errorf("tags/ lists %q", got)
	}
	if got := strings.Join(listDir(t, filepath.Join(app, "tags", "qa")), " "); got != b240.ID+" latest" {
		t.Errorf("tags/qa/ lists %q", got)
	}
	// Many builds with one tag: each is there, latest is the newest.
	nightly := listDir(t, m.path("acme", "nightly", "tags", "nightly"))
	if len(nightly) != 131 {
		t.Errorf("tags/nightly/ of the nightly app lists %d entries, want 130 builds and latest", len(nightly))
	}
	if got, want := readlink(t, m.path("acme", "nightly", "tags", "nightly", "latest")), readlink(t, m.path("acme", "nightly", "latest")); got != "../../"+want {
		t.Errorf("tags/nightly/latest -> %q, want the app's latest %q", got, want)
	}
	if got := emu.Counters().TokensMinted; got != 0 {
		t.Errorf("listing and readlink of versions and tags minted %d tokens", got)
	}

	// What an install script does: adb install MOUNT/acme/field-app/tags/qa/latest/file.
	want, _ := emu.Object(b240.ID, "file")
	if got := sha256sumOf(t, filepath.Join(app, "tags", "qa", "latest", "file")); got != sha256Hex(want) {
		t.Errorf("tags/qa/latest/file: wrong bytes")
	}
	// cp -a keeps them as links that still resolve in the copy.
	out := t.TempDir()
	run(t, "cp", "-a", app, out)
	if target, err := os.Readlink(filepath.Join(out, "field-app", "versions", "2.4.0")); err != nil || target != "../"+b240.ID {
		t.Errorf("cp -a copy of versions/2.4.0: %q %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(out, "field-app", "tags", "qa", "latest", "info.json")); err != nil {
		t.Errorf("tags/qa/latest does not resolve in the copy: %v", err)
	}

	// An edit on Applivery shows after --dir-ttl: the new names appear, the
	// old ones go, info.json follows, and still no token.
	info := filepath.Join(app, b240.ID, "info.json")
	if !strings.Contains(string(readAll(t, info)), `"qa"`) {
		t.Fatalf("info.json lacks the qa tag")
	}
	emu.ResetCounters()
	if err := emu.Data().EditBuild(b240.ID, "2.4.0-hotfix", []string{"staging"}, "Hotfix for the login crash"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 300*time.Millisecond)
	if got := readlink(t, filepath.Join(app, "versions", "2.4.0-hotfix")); got != "../"+b240.ID {
		t.Errorf("versions/2.4.0-hotfix -> %q after the edit", got)
	}
	if got := readlink(t, filepath.Join(app, "tags", "staging", "latest")); got != "../../"+b240.ID {
		t.Errorf("tags/staging/latest -> %q after the edit", got)
	}
	for _, gone := range []string{"versions/2.4.0", "versions/2.4.0+240", "tags/qa", "tags/release"} {
		if _, err := os.Lstat(filepath.Join(app, gone)); !os.IsNotExist(err) {
			t.Errorf("%s after the edit: %v, want it gone", gone, err)
		}
	}
	if got := strings.Join(listDir(t, filepath.Join(app, "tags")), " "); got != "staging" {
		t.Errorf("tags/ lists %q after the edit", got)
	}
	edited := string(readAll(t, info))
	if !strings.Contains(edited, "Hotfix for the login crash") || !strings.Contains(edited, `"staging"`) || strings.Contains(edited, `"qa"`) ||
		!strings.Contains(edited, `"versionName": "2.4.0-hotfix"`) {
		t.Errorf("info.json after the edit:\n%s", edited)
	}
	if st, err := os.Stat(info); err != nil || st.Size() != int64(len(edited)) {
		t.Errorf("info.json size %v after the edit, want %d (%v)", st.Size(), len(edited), err)
	}
	if got := emu.Counters().TokensMinted; got != 0 {
		t.Errorf("following an edit minted %d tokens", got)
	}
}
