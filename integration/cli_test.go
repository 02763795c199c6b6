//go:build linux

package integration

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cli runs the appliveryfs binary with the emulator's hosts and a token.
func cli(t *testing.T, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "APPLIVERY_TOKEN="+token)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run appliveryfs: %v", err)
	}
	return o.String(), e.String(), code
}

func TestCLIList(t *testing.T) {
	emu := startEmulator(t, nil)
	hosts := []string{"--api-url", emu.APIURL(), "--download-url", emu.DownloadURL()}

	// Versions and tags resolve as in the mounted tree.
	b240 := findBuild(t, emu, "acme", "field-app", "2.4.0")
	for _, path := range []string{"acme/field-app/versions/2.4.0", "acme/field-app/versions/2.4.0+240",
		"acme/field-app/tags/qa/latest", "acme/field-app/tags/release/" + b240.ID} {
		out, errOut, code := cli(t, emu.Token(), append([]string{"ls", "--json", path}, hosts...)...)
		if code != 0 || !strings.Contains(out, `"id": "`+b240.ID+`"`) {
			t.Errorf("ls %s: exit %d, want build %s:\n%s%s", path, code, b240.ID, out, errOut)
		}
	}
	if out, _, _ := cli(t, emu.Token(), append([]string{"ls", "acme/field-app"}, hosts...)...); !strings.Contains(out, "TAGS") ||
		!strings.Contains(out, "qa,release") {
		t.Errorf("ls acme/field-app has no tags column:\n%s", out)
	}
	if out, _, _ := cli(t, emu.Token(), append([]string{"ls", "acme/field-app/versions"}, hosts...)...); !strings.Contains(out, "2.4.0+240  "+b240.ID) {
		t.Errorf("ls acme/field-app/versions:\n%s", out)
	}
	if out, _, _ := cli(t, emu.Token(), append([]string{"ls", "acme/field-app/tags/qa"}, hosts...)...); !strings.Contains(out, b240.ID) {
		t.Errorf("ls acme/field-app/tags/qa:\n%s", out)
	}

	out, errOut, code := cli(t, emu.Token(), append([]string{"ls"}, hosts...)...)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	for _, o := range emu.Data().Orgs {
		if !strings.Contains(out, o.Slug) {
			t.Errorf("ls does not list org %s:\n%s", o.Slug, out)
		}
		for _, a := range o.Apps {
			apps, _, _ := cli(t, emu.Token(), append([]string{"ls", o.Slug}, hosts...)...)
			if !strings.Contains(apps, a.Slug) {
				t.Errorf("ls %s does not list app %s", o.Slug, a.Slug)
			}
			builds, errOut, code := cli(t, emu.Token(), append([]string{"ls", o.Slug + "/" + a.Slug}, hosts...)...)
			if code != 0 {
				t.Errorf("ls %s/%s: exit %d: %s", o.Slug, a.Slug, code, errOut)
			}
			for _, b := range a.Builds {
				if !strings.Contains(builds, b.ID) {
					t.Errorf("ls %s/%s does not list build %s", o.Slug, a.Slug, b.ID)
				}
			}
		}
	}
	b := emu.Data().Orgs[0].Apps[0].Builds[0]
	out, _, code = cli(t, emu.Token(), append([]string{"ls", "--json", "acme/field-app/" + b.ID}, hosts...)...)
	if code != 0 || !strings.Contains(out, `"id": "`+b.ID+`"`) {
		t.Errorf("ls --json of one build: exit %d\n%s", code, out)
	}

	// Failures: one clear line on stderr, non-zero exit, never the token.
	for _, tc := range []struct {
		name, token string
		args        []string
		want        []string
	}{
		{"wrong token", "not-the-token", []string{"ls"}, []string{"401", "2001"}},
		{"unknown org", emu.Token(), []string{"ls", "no-such-org"}, []string{"404", "3001"}},
		{"unknown app", emu.Token(), []string{"ls", "acme/no-such-app"}, []string{"404", "3001"}},
		{"unknown version", emu.Token(), []string{"ls", "acme/field-app/versions/9.9.9"}, []string{"versions/9.9.9: not found"}},
		{"unknown tag", emu.Token(), []string{"ls", "acme/field-app/tags/nope/latest"}, []string{"tags/nope/latest: not found"}},
	} {
		_, errOut, code := cli(t, tc.token, append(tc.args, hosts...)...)
		if code == 0 {
			t.Errorf("%s: exit 0", tc.name)
		}
		if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines != 1 {
			t.Errorf("%s: %d lines on stderr, want 1:\n%s", tc.name, lines, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errOut, w)
			}
		}
		if strings.Contains(errOut, tc.token) {
			t.Errorf("%s: stderr shows the token", tc.name)
		}
	}
	_, errOut, code = cli(t, emu.Token(), "ls", "--api-url", "http://127.0.0.1:1", "--download-url", emu.DownloadURL())
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("unreachable API: exit %d, stderr %q", code, errOut)
	}
	// --help of every command goes to stdout, and is not an error.
	for _, c := range []string{"ls", "mount", "emulator", "demo", "version"} {
		out, errOut, code := cli(t, "", c, "--help")
		if code != 0 || !strings.Contains(out, "Usage: appliveryfs "+c) || errOut != "" {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", c, code, out, errOut)
		}
	}
	out, errOut, code = cli(t, "", "mount", "--help")
	if code != 0 || !strings.Contains(out, "--cache-size") || !strings.Contains(out, "--log-file") {
		t.Errorf("mount --help: exit %d", code)
	}
}

// TestCLIMountLifecycle: a rejected token fails before mounting; SIGTERM
// unmounts and exits 0.
func TestCLIMountLifecycle(t *testing.T) {
	emu := startEmulator(t, nil)
	mnt := t.TempDir()
	t.Cleanup(func() {
		if isMounted(mnt) {
			t.Errorf("%s left mounted", mnt)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	base := []string{"mount", "--api-url", emu.APIURL(), "--download-url", emu.DownloadURL(), "--cache-dir", t.TempDir()}

	_, errOut, code := cli(t, "wrong", append(base, mnt)...)
	if code == 0 || !strings.Contains(errOut, "401") || isMounted(mnt) {
		t.Errorf("mount with a wrong token: exit %d, mounted %v, stderr %q", code, isMounted(mnt), errOut)
	}
	_, errOut, code = cli(t, emu.Token(), append(base, mnt+"/missing")...)
	if code == 0 || !strings.Contains(errOut, "missing") {
		t.Errorf("mount on a missing dir: exit %d, stderr %q", code, errOut)
	}

	cmd := exec.Command(binPath, append(base, mnt)...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !isMounted(mnt) {
		if time.Now().After(deadline) {
			t.Fatalf("not mounted after 10 s: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := run(t, "cat", mnt+"/acme/field-app/latest/info.json"); !strings.Contains(got, `"status": "processed"`) {
		t.Errorf("info.json through the CLI mount: %s", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit 15 s after SIGTERM")
	}
	if isMounted(mnt) {
		t.Errorf("SIGTERM left %s mounted", mnt)
	}
}
