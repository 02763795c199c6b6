package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/cache/disk"
	"github.com/spf13/pflag"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "256M": 256 << 20, "256MiB": 256 << 20, "10G": 10 << 30,
		"10gib": 10 << 30, "4k": 4 << 10, "0": 0, "1T": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "1.5G", "ten", "99999999999T"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{}, {"nope"}, {"ls", "a/b/c/d"}, {"mount"}, {"ls", "--no-such-flag"}} {
		err := run(args, &out, &errOut)
		ee, ok := err.(*exitError)
		if !ok || ee.code != 2 {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
	t.Setenv("APPLIVERY_TOKEN", "")
	if err := run([]string{"ls"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "APPLIVERY_TOKEN") {
		t.Errorf("ls without a token: %v", err)
	}
	out.Reset()
	if err := run([]string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "appliveryfs ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}

func TestMountArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string // joined with spaces; "" when an error is wanted
		fake bool
	}{
		{"fstab line through mount.fuse3",
			[]string{"appliveryfs", "/mnt/builds", "-o", "rw,token_file=/etc/t,api_url=http://h,uid=1000,allow_other,_netdev,nofail,dev,suid"},
			"--daemon --fsname appliveryfs --token-file=/etc/t --api-url=http://h --uid=1000 --allow-other /mnt/builds", false},
		{"every valued option", []string{"src", "/m", "-o", "gid=5,org=acme,org=beta,cache_dir=/c,cache_size=64M,disk_cache_size=1G,download_url=http://d,log_file=/l"},
			"--daemon --fsname src --gid=5 --org=acme --org=beta --cache-dir=/c --cache-size=64M --disk-cache-size=1G --download-url=http://d --log-file=/l /m", false},
		{"options glued to -o, and split over two", []string{"src", "/m", "-oro", "-o", "allow_non_empty"},
			"--daemon --fsname src --allow-non-empty /m", false},
		{"-f checks and mounts nothing", []string{"src", "/m", "-f", "-o", "ro"}, "--daemon --fsname src /m", true},
		{"-n -v and -t are accepted", []string{"src", "/m", "-nv", "-t", "fuse.appliveryfs"}, "--daemon --fsname src /m", false},
		{"-s skips unknown options", []string{"src", "/m", "-s", "-o", "cache_mb=5,ro"}, "--daemon --fsname src /m", false},
		{"unknown option", []string{"src", "/m", "-o", "cache_mb=5"}, "", false},
		{"switch given a value", []string{"src", "/m", "-o", "allow_other=1"}, "", false},
		{"valued option without one", []string{"src", "/m", "-o", "uid"}, "", false},
		{"another namespace", []string{"src", "/m", "-N", "/proc/1/ns/mnt"}, "", false},
		{"unknown flag", []string{"src", "/m", "-x"}, "", false},
		{"no mountpoint", []string{"src", "-o", "ro"}, "", false},
		{"-o without options", []string{"src", "/m", "-o"}, "", false},
	} {
		got, fake, err := mountArgs(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: mountArgs(%q) = %q, want an error", tc.name, tc.in, got)
			} else if ee, ok := err.(*exitError); !ok || ee.code != 2 {
				t.Errorf("%s: %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want || fake != tc.fake {
			t.Errorf("%s: mountArgs(%q) = %q, fake %v, %v\n want %q, fake %v", tc.name, tc.in, got, fake, err, tc.want, tc.fake)
		}
	}
}

func TestIsMountHelper(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		args  []string
		want  bool
	}{
		{"/sbin/mount.appliveryfs", []string{"src", "/mnt"}, true},
		{"/usr/bin/appliveryfs", []string{"appliveryfs", "/mnt/builds", "-o", "ro"}, true},
		{"appliveryfs", []string{"mount", "/mnt/builds"}, false},
		{"appliveryfs", []string{"ls", "/acme"}, false},
		{"appliveryfs", []string{"nope"}, false},
		{"appliveryfs", []string{"--help"}, false},
		{"appliveryfs", []string{"src", "relative/dir"}, false},
	} {
		if got := isMountHelper(tc.argv0, tc.args); got != tc.want {
			t.Errorf("isMountHelper(%q, %q) = %v, want %v", tc.argv0, tc.args, got, tc.want)
		}
	}
}

func TestUsageListsEveryCommand(t *testing.T) {
	u := usage()
	for _, c := range commands {
		if !strings.Contains(u, "appliveryfs "+c.synopsis) || !strings.Contains(u, c.short) {
			t.Errorf("usage lacks %s:\n%s", c.name, u)
		}
	}
}

func TestConnectionFromEnvironment(t *testing.T) {
	t.Setenv("APPLIVERY_API_URL", "http://127.0.0.1:1/api")
	t.Setenv("APPLIVERY_DOWNLOAD_URL", "")
	fl := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c := newConnFlags(fl, io.Discard)
	if c.apiURL != "http://127.0.0.1:1/api" || c.downloadURL != api.DefaultDownloadURL {
		t.Errorf("api %q download %q: want the environment's API URL and the default download URL", c.apiURL, c.downloadURL)
	}
	if err := fl.Parse([]string{"--api-url", "http://127.0.0.1:2"}); err != nil || c.apiURL != "http://127.0.0.1:2" {
		t.Errorf("a flag must win over the environment: %q %v", c.apiURL, err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("CACHE_DIRECTORY", "/var/cache/appliveryfs:/var/cache/other")
	if got := defaultCacheDir(); got != "/var/cache/appliveryfs" {
		t.Errorf("with systemd's CACHE_DIRECTORY: %q", got)
	}
	t.Setenv("CACHE_DIRECTORY", "")
	t.Setenv("XDG_CACHE_HOME", "/home/u/.xdg")
	if got := defaultCacheDir(); got != "/home/u/.xdg/appliveryfs" {
		t.Errorf("with XDG_CACHE_HOME: %q", got)
	}
}

func TestVersionString(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "a3c38ff02057f5694088018296df71296fcc8b0b"}
	for _, tc := range []struct {
		info *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"}, Settings: []debug.BuildSetting{rev}},
			"v0.3.1 (rev a3c38ff, go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, rev, {Key: "vcs.modified", Value: "true"}}},
			"(devel) (rev a3c38ff, modified, go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "false"}}},
			"(devel) (rev unknown, go1.26.8)"},
	} {
		if got := formatVersion(tc.info); got != tc.want {
			t.Errorf("formatVersion = %q, want %q", got, tc.want)
		}
	}
	if got := formatVersion(nil); !strings.HasPrefix(got, "(devel) (rev unknown, go") {
		t.Errorf("formatVersion(nil) = %q", got)
	}
}

func TestCacheCommand(t *testing.T) {
	dir := t.TempDir()
	c, err := disk.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	key := disk.Key{Build: "0123456789abcdef01234567", Type: "file"}
	for idx := range int64(4) {
		if err := c.WriteBlock(key, 1000, idx, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	cache := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(append([]string{"cache"}, args...), &out, &errOut)
		return out.String(), err
	}

	if out, err := cache("du", "--cache-dir", dir); err != nil || !strings.Contains(out, "4 blocks of 1 file (3.9 KiB)") {
		t.Errorf("du: %v\n%s", err, out)
	}
	if out, err := cache("du", "--json", "--cache-dir", dir); err != nil || !strings.Contains(out, `"blockBytes": 4000`) {
		t.Errorf("du --json: %v\n%s", err, out)
	}
	if out, err := cache("prune", "--max-size", "2500", "--cache-dir", dir); err != nil ||
		!strings.Contains(out, "removed 2 blocks (2.0 KiB); 2 blocks of 1 file (2.0 KiB) remain") {
		t.Errorf("prune: %v\n%s", err, out)
	}
	if out, err := cache("clear", "--cache-dir", dir); err != nil || !strings.Contains(out, "removed 2 blocks") {
		t.Errorf("clear: %v\n%s", err, out)
	}
	if st, err := disk.StatDir(dir); err != nil || st.Blocks != 0 {
		t.Errorf("after clear: %+v, %v", st, err)
	}

	for _, args := range [][]string{{}, {"nope"}, {"du", "extra"}, {"prune"}, {"du", "--max-size", "1G"}, {"clear", "--json"}} {
		_, err := cache(append(args, "--cache-dir", dir)...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("cache %q: %v, want a usage error (exit 2)", args, err)
		}
	}
	missing := filepath.Join(dir, "missing")
	for _, sub := range []string{"du", "clear", "prune"} {
		_, err := cache(sub, "--max-size", "0", "--cache-dir", missing)
		if sub != "prune" {
			_, err = cache(sub, "--cache-dir", missing)
		}
		var ee *exitError
		if err == nil || errors.As(err, &ee) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("cache %s of a missing directory: %v, want a plain error (exit 1)", sub, err)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("cache %s made the missing directory", sub)
		}
	}
}

func TestGetPath(t *testing.T) {
	const id = "65f0c3a1d17707977078336c"
	for in, want := range map[string]getRef{
		"acme/field-app/latest":                 {org: "acme", app: "field-app", build: []string{"latest"}, typ: api.File},
		"/acme/field-app/" + id + "/aab/":       {org: "acme", app: "field-app", build: []string{id}, typ: api.AAB},
		"acme/field-app/" + id + "/auto.plist":  {org: "acme", app: "field-app", build: []string{id}, typ: api.Auto, ext: "plist"},
		"acme/field-app/versions/2.4.0+240":     {org: "acme", app: "field-app", build: []string{"versions", "2.4.0+240"}, typ: api.File},
		"acme/field-app/versions/file":          {org: "acme", app: "field-app", build: []string{"versions", "file"}, typ: api.File},
		"acme/field-app/versions/file/auto":     {org: "acme", app: "field-app", build: []string{"versions", "file"}, typ: api.Auto},
		"acme/field-app/tags/qa/latest/file":    {org: "acme", app: "field-app", build: []string{"tags", "qa", "latest"}, typ: api.File},
		"acme/field-app/tags/qa/" + id:          {org: "acme", app: "field-app", build: []string{"tags", "qa", id}, typ: api.File},
		"acme/field-app/tags/file/latest/aab":   {org: "acme", app: "field-app", build: []string{"tags", "file", "latest"}, typ: api.AAB},
		"acme/field-app/not-an-id-but-resolved": {org: "acme", app: "field-app", build: []string{"not-an-id-but-resolved"}, typ: api.File},
	} {
		got, err := parseGetPath(in)
		if err != nil || got.String() != want.String() || got.typ != want.typ || got.ext != want.ext {
			t.Errorf("parseGetPath(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "acme", "acme/field-app", "acme//latest", "acme/field-app/latest/icon",
		"acme/field-app/latest/file/more", "acme/field-app/versions", "acme/field-app/tags/qa",
		"acme/field-app/tags/qa/latest/file/x"} {
		if _, err := parseGetPath(bad); err == nil {
			t.Errorf("parseGetPath(%q) accepted", bad)
		} else if ee, ok := err.(*exitError); !ok || ee.code != 2 {
			t.Errorf("parseGetPath(%q) = %v, want a usage error", bad, err)
		}
	}
}

func TestGetStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{&api.Error{StatusCode: 401, Code: api.CodeTokenNotValid}, exitTokenRejected},
		{&api.Error{StatusCode: 403}, exitTokenRejected},
		{&api.Error{StatusCode: 404, Code: api.CodeNotFound}, exitNotFound},
		{&api.Error{StatusCode: 404, Code: api.CodeNotProcessed}, exitNotProcessed},
		{&api.Error{StatusCode: 503}, 1},
		{errors.Join(errors.New("list builds"), api.ErrNotFound), exitNotFound},
		{errors.New("file content does not match its checksum"), 1},
		{usageErr("bad"), 2},
	} {
		err := getStatus(tc.err)
		ee, ok := err.(*exitError)
		if !ok || ee.code != tc.code || !errors.Is(err, tc.err) && ee.err != tc.err {
			t.Errorf("getStatus(%v) = %#v, want exit %d", tc.err, err, tc.code)
		}
	}
	if getStatus(nil) != nil {
		t.Error("getStatus(nil) is an error")
	}
}

func TestGetUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"get"}, {"get", "a/b"}, {"get", "a/b/latest", "c/d/latest"}, {"get", "--block-size", "1x", "a/b/latest"}} {
		if err := run(args, &out, &errOut); err == nil {
			t.Errorf("run(%q) succeeded", args)
		} else if ee, ok := err.(*exitError); !ok || ee.code != 2 {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
	out.Reset()
	errOut.Reset()
	if err := run([]string{"get", "--help"}, &out, &errOut); !errors.Is(err, pflag.ErrHelp) {
		t.Errorf("get --help: %v", err)
	}
	help := out.String() + errOut.String()
	for _, want := range []string{"--cache-dir", "--disk-cache-size", "--quiet", "--output", "versions/NAME", "tags/TAG/latest",
		"3    token rejected", "4    not found", "5    build not processed yet", "130  interrupted"} {
		if !strings.Contains(help, want) {
			t.Errorf("get --help lacks %q:\n%s", want, help)
		}
	}
}

func TestGetDestination(t *testing.T) {
	dir := t.TempDir()
	art := api.Artifact{Type: api.Auto, Ext: "plist"}
	for out, want := range map[string]string{"-": "-", dir: dir + "/auto.plist", dir + "/": dir + "/auto.plist",
		dir + "/x.plist": dir + "/x.plist"} {
		if got, err := destination(out, art); err != nil || got != want {
			t.Errorf("destination(%q) = %q, %v; want %q", out, got, err, want)
		}
	}
	if _, err := destination(dir+"/missing/", art); err == nil {
		t.Error("destination of a missing directory accepted")
	}
}

func TestCacheConfig(t *testing.T) {
	parse := func(args ...string) (cache.Config, error) {
		fl := pflag.NewFlagSet("mount", pflag.ContinueOnError)
		mf := newMountFlags(fl)
		if err := fl.Parse(args); err != nil {
			t.Fatal(err)
		}
		return mf.cacheConfig()
	}
	cfg, err := parse()
	if err != nil || cfg.MemoryBytes != 256<<20 || cfg.BlockSize != 4<<20 || cfg.MaxAhead != 16 {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
	if memoryLimit(cfg) != 256<<20+48<<20 {
		t.Errorf("memory limit %d from the effective cache size", memoryLimit(cfg))
	}
	if cfg, err := parse("--prefetch-blocks", "0"); err != nil || cfg.MaxAhead != 0 {
		t.Errorf("--prefetch-blocks 0: %+v %v, want prefetch off", cfg, err)
	}
	if cfg, err := parse("--cache-size", "64M", "--prefetch-blocks", "100"); err != nil || cfg.MaxAhead != 8 {
		t.Errorf("a window of 100 in 16 slots: %d, %v; want half the budget, 8", cfg.MaxAhead, err)
	}
	for _, bad := range [][]string{{"--cache-size", "0"}, {"--cache-size", "8M"}, {"--block-size", "4K"},
		{"--prefetch-blocks", "-1"}, {"--io-timeout", "0s"}, {"--dir-ttl", "0s"}} {
		_, err := parse(bad...)
		if ee, ok := err.(*exitError); !ok || ee.code != 2 || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want a usage error naming the flag", bad, err)
		}
	}
}
