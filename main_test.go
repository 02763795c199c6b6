package main

import (
	"bytes"
	"strings"
	"testing"
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
