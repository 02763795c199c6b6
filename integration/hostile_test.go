//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/fs"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// hostileLog keeps what a mount logs, as JSON records, for tests that
// count log lines.
type hostileLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *hostileLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many records have each "path: msg" of those whose
// msg starts with one of prefixes.
func (l *hostileLog) count(t *testing.T, prefixes ...string) map[string]int {
	t.Helper()
	l.mu.Lock()
	text := l.buf.String()
	l.mu.Unlock()
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct{ Msg, Path string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(rec.Msg, p) {
				out[rec.Path+": "+rec.Msg]++
				break
			}
		}
	}
	return out
}

// hostileMount mounts the emulator's data like mount does, with the log
// kept for the test as well as shown by t.Log; it is unmounted when the
// test ends, pass or fail.
func hostileMount(t *testing.T, emu *emulator.Server, dirTTL time.Duration) (string, *hostileLog) {
	t.Helper()
	dir := t.TempDir() // before the unmount cleanup, so that runs first
	client, err := api.NewClient(api.Config{APIURL: emu.APIURL(), DownloadURL: emu.DownloadURL(), Token: emu.Token()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Config{BlockSize: 1 << 20, MemoryBytes: 16 << 20, IOTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := &hostileLog{}
	fsys := fs.New(fs.Config{Client: client, Cache: c, DirTTL: dirTTL, IOTimeout: 20 * time.Second,
		Log: slog.New(slog.NewJSONHandler(io.MultiWriter(log, testWriter{t}), nil))})
	srv, err := fs.Mount(dir, fsys, fs.MountOptions{})
	if err != nil {
		c.Close()
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := fs.Unmount(srv, dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		srv.Wait()
		c.Close()
		if isMounted(dir) {
			t.Errorf("%s still mounted", dir)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir, log
}

// hostileBuild is a small processed Android build.
func hostileBuild(created time.Time, apk *emulator.Object) *emulator.Build {
	return &emulator.Build{ID: emulator.NewID(), Status: "processed", OS: "android", BuildPlatform: "android",
		VersionName: "1.0", VersionCode: "1", OriginalExtension: "apk", CreatedAt: created, PackageName: "com.example.hostile",
		MinOS: "24", Objects: map[string]*emulator.Object{"file": apk}}
}

// TestHostileNames: organizations and apps whose slugs are empty, ".",
// "..", hold "/" or NUL, are too long or are another's: the tree lists
// each usable name once, falls back to the id where only the slug is
// bad, leaves out what has neither, never leads outside the mount or to
// another object, and logs one line per object so treated, not one per
// refresh.
func TestHostileNames(t *testing.T) {
	apk := &emulator.Object{Name: "app.apk", Data: []byte("PK\x03\x04 not much of an apk")}
	created := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	app := func(id, slug string) *emulator.App {
		return &emulator.App{ID: id, Name: "App " + slug, Slug: slug, Builds: []*emulator.Build{hostileBuild(created, apk)}}
	}
	byID := []*emulator.App{ // each listed by its id
		app(emulator.NewID(), ""),
		app(emulator.NewID(), "."),
		app(emulator.NewID(), ".."),
		app(emulator.NewID(), "a/b"),
		app(emulator.NewID(), "x\x00y"),
		app(emulator.NewID(), strings.Repeat("long", 75)), // 300 bytes
	}
	good := app(emulator.NewID(), "good")
	twin1, twin2 := app(emulator.NewID(), "twin"), app(emulator.NewID(), "twin")
	acme := &emulator.Org{ID: emulator.NewID(), Name: "Acme", Slug: "acme",
		Apps: append(slices.Clone(byID), good, twin1, twin2,
			app("..", "dots-id"), // left out: its id would address another endpoint
			app("p/q", "../x"),   // left out: neither is a file name
		)}
	dotOrg := &emulator.Org{ID: emulator.NewID(), Name: "Dots", Slug: "..", Apps: []*emulator.App{app(emulator.NewID(), "inner")}}
	badOrg := &emulator.Org{ID: "a/b", Name: "Escape", Slug: "../x", Apps: []*emulator.App{app(emulator.NewID(), "passwd")}}
	emu := startEmulator(t, &emulator.Dataset{Orgs: []*emulator.Org{acme, dotOrg, badOrg}})
	const ttl = 500 * time.Millisecond
	mnt, log := hostileMount(t, emu, ttl)

	if got, want := listDir(t, mnt), []string{dotOrg.ID, "acme"}; !slices.Equal(got, sorted(want)) {
		t.Errorf("root lists %q, want %q", got, sorted(want))
	}
	want := []string{"good", "twin", twin2.ID}
	for _, a := range byID {
		want = append(want, a.ID)
	}
	acmeDir := filepath.Join(mnt, "acme")
	if got := listDir(t, acmeDir); !slices.Equal(got, sorted(want)) {
		t.Errorf("acme lists\n %q\nwant\n %q", got, sorted(want))
	}
	// Each name leads to its own app: the first of the twins keeps the
	// slug, ids lead where the API would.
	for name, a := range map[string]*emulator.App{"good": good, "twin": twin1, twin2.ID: twin2, twin1.ID: twin1,
		good.ID: good, byID[2].ID: byID[2]} {
		if got := listDir(t, filepath.Join(acmeDir, name)); !slices.Contains(got, a.Builds[0].ID) {
			t.Errorf("acme/%s lists %q, not the builds of app %s", name, got, a.ID)
		}
	}
	if got := readlink(t, filepath.Join(acmeDir, twin1.ID)); got != "twin" {
		t.Errorf("acme/%s -> %q, want twin", twin1.ID, got)
	}
	if got := listDir(t, filepath.Join(mnt, dotOrg.ID, "inner")); !slices.Contains(got, dotOrg.Apps[0].Builds[0].ID) {
		t.Errorf("the org slugged .. lists %q under its id", got)
	}

	// Nothing leads out: ".." is the kernel's, not an app; the mount's
	// parent is not the emulator's data; find stays inside, once per path.
	// Not filepath.Join, which would clean the dots away before the kernel sees them.
	for _, p := range []string{acmeDir + "/..", acmeDir + "/" + byID[2].ID + "/../.."} {
		if inode(t, p) != inode(t, mnt) {
			t.Errorf("%s is not the mount's root", p)
		}
	}
	if got := listDir(t, filepath.Join(mnt, "..")); slices.Contains(got, "acme") || !slices.Contains(got, filepath.Base(mnt)) {
		t.Errorf("the mount's parent lists %q", got)
	}
	paths := strings.Split(strings.TrimSpace(run(t, "find", mnt)), "\n")
	seen := map[string]bool{}
	for _, p := range paths {
		rel, err := filepath.Rel(mnt, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || p != filepath.Clean(p) {
			t.Errorf("find printed %q, outside the mount or not clean", p)
		}
		if seen[p] {
			t.Errorf("find printed %q twice", p)
		}
		seen[p] = true
	}
	// root, 2 orgs, 9+1 apps, and in each app: a build dir with info.json,
	// file.apk, auto.apk, file and auto; latest, versions/1.0 and 1.0+1,
	// tags/.
	if want := 1 + 2 + 10*(1+1+5+1+3+1); len(paths) != want {
		t.Errorf("find printed %d paths, want %d:\n%s", len(paths), want, strings.Join(paths, "\n"))
	}
	if got := emu.Counters().TokensMinted; got != 0 {
		t.Errorf("listing minted %d tokens", got)
	}

	wantLog := map[string]int{
		"/: listed an organization by its id: its slug cannot be a file name":                  1,
		"/: skipped an organization whose slug and id cannot be file names":                    1,
		"/acme: listed an app by its id: its slug cannot be a file name":                       6,
		"/acme: listed an app by its id: its slug is also the slug of an app listed before it": 1,
		"/acme: skipped an app whose id cannot be used to ask for it":                          1,
		"/acme: skipped an app whose slug and id cannot be file names":                         1,
	}
	if got := log.count(t, "listed", "skipped"); !maps.Equal(got, wantLog) {
		t.Errorf("log:\n got %v\nwant %v", got, wantLog)
	}
	// Refreshes meet the same names again and log nothing more.
	time.Sleep(ttl + 200*time.Millisecond)
	listDir(t, mnt)
	listDir(t, acmeDir)
	if got := log.count(t, "listed", "skipped"); !maps.Equal(got, wantLog) {
		t.Errorf("log after a refresh:\n got %v\nwant %v", got, wantLog)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestHostileManyBuilds: an app with 10,000 builds lists them all, page
// by page of 100, in reasonable time; a build found in the listing is
// stat'ed without asking the API again or minting a token.
func TestHostileManyBuilds(t *testing.T) {
	const n = 10000
	apk := &emulator.Object{Name: "app.apk", Data: []byte("PK\x03\x04 one apk for all")}
	start := time.Now().Add(-n * time.Minute).UTC().Truncate(time.Millisecond)
	builds := make([]*emulator.Build, n)
	for i := range builds {
		b := hostileBuild(start.Add(time.Duration(i)*time.Minute), apk)
		b.VersionName, b.VersionCode = fmt.Sprintf("2.%d", i/100), fmt.Sprint(i)
		builds[i] = b
	}
	big := &emulator.App{ID: emulator.NewID(), Name: "Big", Slug: "big", Builds: builds}
	emu := startEmulator(t, &emulator.Dataset{Orgs: []*emulator.Org{{ID: emulator.NewID(), Name: "Acme", Slug: "acme",
		Apps: []*emulator.App{big}}}})
	mnt, _ := hostileMount(t, emu, time.Minute)
	app := filepath.Join(mnt, "acme", "big")

	began := time.Now()
	names := strings.Fields(run(t, "ls", "-1", app))
	took := time.Since(began)
	t.Logf("ls of %d builds took %v", n, took)
	if took > 30*time.Second {
		t.Errorf("ls of %d builds took %v", n, took)
	}
	if len(names) != n+3 {
		t.Errorf("ls lists %d names, want %d builds, latest, tags and versions", len(names), n)
	}
	set := map[string]bool{}
	for _, name := range names {
		set[name] = true
	}
	for _, b := range builds {
		if !set[b.ID] {
			t.Fatalf("build %s is not listed", b.ID)
		}
	}
	if len(set) != len(names) {
		t.Errorf("ls lists %d names, %d of them distinct", len(names), len(set))
	}
	if got := readlink(t, filepath.Join(app, "latest")); got != builds[n-1].ID {
		t.Errorf("latest -> %q, want the newest build %s", got, builds[n-1].ID)
	}
	calls := emu.Counters().APICalls
	if calls["builds"] != n/100 {
		t.Errorf("listing took %d pages of builds, want %d of 100", calls["builds"], n/100)
	}

	emu.ResetCounters()
	oldest := filepath.Join(app, builds[0].ID)
	checkMode(t, oldest, os.ModeDir|0o555)
	if st := checkMode(t, filepath.Join(oldest, "file.apk"), 0o444); st != nil && st.Size() != int64(len(apk.Data)) {
		t.Errorf("file.apk of the oldest build: size %d, want %d", st.Size(), len(apk.Data))
	}
	if c := emu.Counters(); c.TokensMinted != 0 || c.APICalls["build"] != 0 || c.APICalls["builds"] != 0 {
		t.Errorf("stat of a listed build: %d tokens, %d build and %d builds calls; want none",
			c.TokensMinted, c.APICalls["build"], c.APICalls["builds"])
	}
}

// TestHostileAnswers: a list of apps that is not JSON, is cut short, is a
// proxy's HTML page or says success without data fails the directory
// with EIO, once logged, with the mount up; where the directory was
// listed before, that listing is served instead, once logged.
func TestHostileAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite func(emulator.APIAnswer) emulator.APIAnswer
	}{
		{"malformed JSON", emulator.Corrupted},
		{"truncated JSON", emulator.Truncated},
		{"connection cut mid-answer", emulator.CutShort},
		{"HTML 502 page", emulator.HTMLErrorPage(502)},
		{"success without data", emulator.WithoutData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu := startEmulator(t, nil)
			const ttl = 300 * time.Millisecond
			mnt, log := hostileMount(t, emu, ttl)
			acme := filepath.Join(mnt, "acme")

			emu.SetAPIOverride(emulator.ForKind("apps", tc.rewrite))
			for range 2 {
				if _, err := os.ReadDir(acme); !errors.Is(err, syscall.EIO) {
					t.Errorf("readdir acme: %v, want EIO", err)
				}
			}
			if got := listDir(t, mnt); !slices.Contains(got, "acme") {
				t.Errorf("root lists %q with the apps failing", got)
			}
			if got := log.count(t, "list failed"); !maps.Equal(got, map[string]int{"/acme: list failed": 1}) {
				t.Errorf("log: %v, want one list failed for /acme", got)
			}

			emu.SetAPIOverride(nil)
			before := listDir(t, acme)
			emu.SetAPIOverride(emulator.ForKind("apps", tc.rewrite))
			time.Sleep(ttl + 200*time.Millisecond)
			for range 2 {
				if got := listDir(t, acme); !slices.Equal(got, before) {
					t.Errorf("acme lists %q after a failed refresh, want the previous %q", got, before)
				}
			}
			if got := log.count(t, "refresh failed"); !maps.Equal(got, map[string]int{"/acme: refresh failed, serving the previous listing": 1}) {
				t.Errorf("log: %v, want one refresh failed for /acme", got)
			}
			if !isMounted(mnt) {
				t.Error("the mount is gone")
			}
		})
	}
}
