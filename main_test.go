package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/appliveryfs/appliveryfs/api"
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
	c := newConnFlags(fl)
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
