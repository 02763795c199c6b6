//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// mountProc is the mount daemon, a subprocess of the appliveryfs binary,
// so that its RSS is its own and its log is kept.
type mountProc struct {
	*runner.Mount
	metricsURL string // from the "serving metrics" log record
}

// startMount runs argv, which must mount dir with --log-format json and
// --metrics-addr, and waits until the mount is up and its metrics are
// served. On failure nothing is left running or mounted.
func startMount(ctx context.Context, argv, env []string, dir, logPath string) (*mountProc, error) {
	rm, err := runner.StartMount(runner.MountSpec{
		Label:   "the mount",
		Dir:     dir,
		LogPath: logPath,
		Env:     env,
		Argv:    argv,
		// Ctrl-C in the terminal must not stop the mount under the
		// readers; cleanup stops it after them.
		OwnGroup:  true,
		CheckExit: true,
	})
	if err != nil {
		return nil, err
	}
	m := &mountProc{Mount: rm}
	metricsServed := func() bool {
		if m.metricsURL == "" {
			if rec, ok := findRecord(logPath, "serving metrics"); ok {
				m.metricsURL, _ = rec["addr"].(string)
			}
		}
		return m.metricsURL != ""
	}
	if err := m.WaitReady(ctx, 50*time.Millisecond, metricsServed); err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	return m, nil
}

// scrapeClient is short-timed: a mount too busy to answer its metrics
// within seconds is itself a finding.
var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrape reads the Prometheus text format into a map from the series
// (name and labels, as written) to its value.
func scrape(url string) (map[string]float64, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	body, err := runner.Fetch(scrapeClient, req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("scrape metrics: line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("scrape metrics: line %q", line)
		}
		out[line[:i]] = v
	}
	return out, nil
}

// logRecord is one line of a --log-format json log.
type logRecord map[string]any

func (r logRecord) str(key string) string {
	s, _ := r[key].(string)
	return s
}

// rawKey holds a record's line as the daemon wrote it.
const rawKey = "\x00raw"

// readRecords decodes a JSON log; lines that are not JSON objects (a
// panic's trace, say) come back as records of level "RAW" with the line
// as "msg", so that nothing the daemon wrote is lost.
func readRecords(path string) []logRecord {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []logRecord
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec logRecord
		if json.Unmarshal([]byte(line), &rec) != nil || rec == nil {
			rec = logRecord{"level": "RAW", "msg": line}
		}
		rec[rawKey] = line
		out = append(out, rec)
	}
	return out
}

func findRecord(path, msg string) (logRecord, bool) {
	for _, rec := range readRecords(path) {
		if rec.str("msg") == msg {
			return rec, true
		}
	}
	return nil, false
}
