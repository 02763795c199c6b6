//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// logRecords parses a --log-format json log; every line must be a record.
func logRecords(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		out = append(out, rec)
	}
	return out
}

// waitRecord waits for a record with msg in the log buffer.
func waitRecord(t *testing.T, buf *syncBuffer, msg string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, rec := range logRecords(t, buf.String()) {
			if rec["msg"] == msg {
				return rec
			}
		}
	}
	t.Fatalf("no %q record in the log:\n%s", msg, buf.String())
	return nil
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

// startLogged runs `appliveryfs mount --log-format json ARGS MNT` in the
// foreground and waits for its "mounted" record; the log is read while it
// runs.
func startLogged(t *testing.T, emu *emulator.Server, mnt string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	logs := newSyncBuffer()
	cmd := exec.Command(binPath, append(append([]string{"mount", "--log-format", "json"}, args...), append(hostArgs(emu), mnt)...)...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "APPLIVERY_TOKEN="+emu.Token())
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Stopped as a user would, so that it unmounts; killed if it hangs.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	waitRecord(t, logs, "mounted")
	return cmd, logs
}

// scrape fetches the metrics and returns each sample line's value by its
// name and labels, as the exposition format writes them.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsStatusAndSignal: the metrics after one cp count exactly one
// token and the file's bytes; the status file shows the same and the open
// files; SIGUSR1 logs it and the mount stays up.
func TestMetricsStatusAndSignal(t *testing.T) {
	emu := startEmulator(t, nil)
	mnt := mountpoint(t)
	cmd, logs := startLogged(t, emu, mnt, "--metrics-addr", "127.0.0.1:0", "--cache-dir", t.TempDir(), "--block-size", "256K")
	url, _ := waitRecord(t, logs, "serving metrics")["addr"].(string)

	var ef expectedFile
	for _, e := range expectedFiles(emu) {
		if len(e.data) > len(ef.data) && !strings.HasSuffix(e.name, ".plist") {
			ef = e
		}
	}
	out := filepath.Join(t.TempDir(), "copy")
	run(t, "cp", ef.path(mnt), out)
	// Bytes stream to readers before their block's fill counts itself,
	// and blocks go to the disk cache after they were served: the last
	// counts may land a moment after cp is done.
	m := scrape(t, url)
	for deadline := time.Now().Add(5 * time.Second); (m["appliveryfs_storage_fetched_bytes_total"] < float64(len(ef.data)) ||
		m["appliveryfs_disk_cache_bytes"] < float64(len(ef.data))) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m = scrape(t, url)
	}
	size := float64(len(ef.data))
	blocks := float64((len(ef.data) + 256<<10 - 1) / (256 << 10))
	for name, want := range map[string]float64{
		"appliveryfs_tokens_minted_total":                   1,
		"appliveryfs_served_bytes_total":                    size,
		"appliveryfs_storage_fetched_bytes_total":           size,
		`appliveryfs_cache_misses_total{tier="memory"}`:     blocks,
		`appliveryfs_cache_misses_total{tier="disk"}`:       blocks,
		`appliveryfs_cache_hits_total{tier="disk"}`:         0,
		"appliveryfs_open_files":                            0,
		`appliveryfs_remints_total{reason="expired URL"}`:   0,
		`appliveryfs_remints_total{reason="spent token"}`:   0,
		`appliveryfs_retries_total{cause="5xx"}`:            0,
		`appliveryfs_retries_total{cause="cut connection"}`: 0,
		"appliveryfs_files_verified_total":                  1,
		"appliveryfs_checksum_mismatches_total":             0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if m["appliveryfs_read_duration_seconds_count"] < 1 || m[`appliveryfs_read_duration_seconds_bucket{le="+Inf"}`] != m["appliveryfs_read_duration_seconds_count"] {
		t.Errorf("read latency histogram: count %v, +Inf bucket %v", m["appliveryfs_read_duration_seconds_count"],
			m[`appliveryfs_read_duration_seconds_bucket{le="+Inf"}`])
	}
	// Whether this copy prefetched depends on the order the kernel's
	// parallel readahead READs arrive in; the figure must be there.
	if _, ok := m["appliveryfs_prefetched_blocks_total"]; !ok || m["appliveryfs_disk_cache_bytes"] != size || m["go_goroutines"] <= 0 {
		t.Errorf("prefetched %v (present %v), disk cache bytes %v (want %v), goroutines %v", m["appliveryfs_prefetched_blocks_total"],
			ok, m["appliveryfs_disk_cache_bytes"], size, m["go_goroutines"])
	}

	// The status file: not listed, the same figures, the open files.
	if ents := listDirAll(t, mnt); strings.Contains(strings.Join(ents, " "), ".appliveryfs") {
		t.Errorf("the root lists .appliveryfs: %v", ents)
	}
	holdOpen(t, ef.path(mnt))
	status := run(t, "cat", filepath.Join(mnt, ".appliveryfs", "status"))
	rel := strings.TrimPrefix(ef.path(mnt), mnt)
	for _, want := range []string{"1 minted", "open files:   1", rel + "  ", fmt.Sprintf("of %s fetched", humanSize(int64(len(ef.data))))} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if m := scrape(t, url); m["appliveryfs_open_files"] != 1 {
		t.Errorf("open_files = %v with one file held open", m["appliveryfs_open_files"])
	}

	// SIGUSR1: the summary in the log, the mount still up.
	cmd.Process.Signal(syscall.SIGUSR1)
	if rec := waitRecord(t, logs, "status"); !strings.Contains(fmt.Sprint(rec["status"]), "1 minted") {
		t.Errorf("SIGUSR1 record: %v", rec)
	}
	if _, err := os.Stat(filepath.Join(mnt, "acme")); err != nil || !isMounted(mnt) {
		t.Errorf("the mount after SIGUSR1: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cmd, 15*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// humanSize is how the status file prints sizes.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(1024), 0
	for m := n / 1024; m >= 1024; m /= 1024 {
		div *= 1024
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// listDirAll is ls -a of dir.
func listDirAll(t *testing.T, dir string) []string {
	return strings.Fields(run(t, "ls", "-a", dir))
}

// TestDebugLogKeepsSecrets reads across token and URL expiries and
// storage faults with --log-level debug: mints, re-mints with their reason
// and retries with their cause are logged; the service token, download
// tokens and URL signatures never are.
func TestDebugLogKeepsSecrets(t *testing.T) {
	data, b := bigIPAData(t, 8<<20, 20)
	emu := startEmulator(t, data)
	emu.SetTokenTTL(400 * time.Millisecond)
	emu.SetURLTTL(400 * time.Millisecond)
	emu.SetBandwidth(2 << 20)
	emu.SetFaults(emulator.Faults{StorageStatus: 503, StorageCount: 2, CutAfter: 100 << 10, CutCount: 2})
	mnt := mountpoint(t)
	cmd, logs := startLogged(t, emu, mnt, "--log-level", "debug", "--cache-dir", t.TempDir(), "--block-size", "256K",
		"--prefetch-blocks", "4")
	want, _ := emu.Object(b.ID, "file")
	if got := sha256sumOf(t, filepath.Join(mnt, "acme", "field-ios", b.ID, "file.ipa")); got != sha256Hex(want) {
		t.Fatal("wrong bytes across expiries and faults")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, 15*time.Second)

	log := logs.String()
	seen := map[string]bool{}
	for _, rec := range logRecords(t, log) {
		msg, _ := rec["msg"].(string)
		switch msg {
		case "re-mint":
			seen[msg+": "+fmt.Sprint(rec["reason"])] = true
		case "retry":
			seen[msg+": "+fmt.Sprint(rec["cause"])] = true
		default:
			seen[msg] = true
		}
	}
	for _, w := range []string{"mounted", "minted", "re-mint: expired URL", "retry: 5xx", "retry: cut connection", "prefetch window", "unmounted"} {
		if !seen[w] {
			t.Errorf("no %q record in the debug log; records: %v", w, seen)
		}
	}
	secrets := append(emu.IssuedSecrets(), emu.Token())
	if len(secrets) < 3 {
		t.Fatalf("only %d secrets issued: the run did not cross an expiry", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the debug log holds a secret %q", s)
		}
	}
	if regexp.MustCompile(`sig=|expires=|/v1/download/`).MatchString(log) {
		t.Errorf("the debug log holds a signed or download URL:\n%s", log)
	}
}
