//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// maxListed bounds the failed copies and log lines the report quotes in
// full; the counts are always complete.
const maxListed = 20

// report prints what the soak saw and whether it met its targets; it
// returns true if a target was missed.
func (s *soak) report(w io.Writer) (missed bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	t := &s.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.metrics

	p("appliveryfs soak report")
	p("  run:             %v (--duration %v) with %d readers (cp to a file, dd to a pipe), seed %d; start sample at %v",
		s.ended.Sub(s.began).Round(time.Second), s.cfg.duration, s.cfg.readers, s.cfg.seed, s.cfg.warmUp)
	if s.cl.Interrupted() {
		p("  INTERRUPTED: the figures cover the run until then")
	}
	var bigs []string
	for _, b := range bigBuilds {
		bigs = append(bigs, humanBytes(b.size))
	}
	p("  files:           %d files, %s (%d big: %s)", s.fx.count(), humanBytes(s.fx.totalBytes()), len(bigBuilds), strings.Join(bigs, ", "))
	p("  mount:           one for the whole run: --cache-size %s --disk-cache-size %s --kernel-cache=false; drop_caches %d times",
		cacheSize, diskCacheSize, s.drops)
	p("  emulator:        token and URL lifetimes drawn from %v-%v every %v; %.1f%% of API requests answer 503,",
		minTTL, maxTTL, ttlEvery, 100*s.cfg.faultRate)
	p("                   %.1f%% of storage requests fail (half 503, half cut mid-body)", 100*s.cfg.faultRate)
	p("")
	p("  copies done:     %d (%s)", t.copies, joinCounts(t.byHow))
	p("  bytes verified:  %s (%d)", humanBytes(t.bytesVerified), t.bytesVerified)
	p("  wrong bytes:     %d in %d copies", t.wrongBytes, t.wrongCopies)
	p("  failed copies:   %d", t.failed)
	if m != nil {
		if s.metricsAt != "at the end" {
			p("  metrics:         scraped %s", s.metricsAt)
		}
		p("  tokens minted:   %.0f (the emulator minted %d, answered %d API and %d storage requests)",
			m["appliveryfs_tokens_minted_total"], s.emuCounts.TokensMinted, sumCounts(s.emuCounts.APICalls), s.emuCounts.StorageRequests)
		p("  re-mints:        %s", joinSeries(m, "appliveryfs_remints_total", "reason"))
		p("  retries:         %s", joinSeries(m, "appliveryfs_retries_total", "cause"))
		errs := joinSeries(m, "appliveryfs_errors_total", "errno")
		if errs == "" {
			errs = "none"
		}
		p("  errors:          %s", errs)
		p("  checksums:       %.0f files verified by the mount, %.0f mismatched",
			m["appliveryfs_files_verified_total"], m["appliveryfs_checksum_mismatches_total"])
		p("  storage:         %s fetched, %s served; hits memory %.0f, disk %.0f; misses memory %.0f, disk %.0f",
			humanBytes(int64(m["appliveryfs_storage_fetched_bytes_total"])), humanBytes(int64(m["appliveryfs_served_bytes_total"])),
			m[`appliveryfs_cache_hits_total{tier="memory"}`], m[`appliveryfs_cache_hits_total{tier="disk"}`],
			m[`appliveryfs_cache_misses_total{tier="memory"}`], m[`appliveryfs_cache_misses_total{tier="disk"}`])
	} else {
		p("  metrics:         not scraped at the end")
	}
	p("  idle mount:      start -> end (each the smallest of %d samples %v after the last copy)", settleProbes, settleTime)
	row := func(name string, v func(sample) int64, format func(int64) string) {
		if !s.first.ok || !s.last.ok {
			p("    %-15snot measured", name+":")
			return
		}
		a, b := v(s.first), v(s.last)
		p("    %-15s%s -> %s (%s)", name+":", format(a), format(b), growth(a, b, true))
	}
	row("RSS", func(x sample) int64 { return x.rss }, humanBytes)
	row("RssAnon", func(x sample) int64 { return x.rssAnon }, humanBytes)
	row("heap in use", func(x sample) int64 { return x.heap }, humanBytes)
	row("memory cache", func(x sample) int64 { return x.memCache }, humanBytes)
	row("goroutines", func(x sample) int64 { return x.goroutines }, func(n int64) string { return fmt.Sprint(n) })
	if len(s.timeline) > 0 {
		var rss, gor []int64
		for _, smp := range s.timeline {
			rss, gor = append(rss, smp.rss), append(gor, smp.goroutines)
		}
		p("  under load:      RSS %s-%s, goroutines %d-%d, over %d samples every %v",
			humanBytes(slices.Min(rss)), humanBytes(slices.Max(rss)), slices.Min(gor), slices.Max(gor), len(s.timeline), sampleEvery)
		p("")
		p("  timeline (under load, one line a minute):")
		p("    %7s  %8s  %10s  %10s  %11s  %10s", "time", "copies", "RSS", "heap", "mem cache", "goroutines")
		perLine := int(time.Minute / sampleEvery)
		for i, smp := range s.timeline {
			if (i+1)%perLine != 0 && i != len(s.timeline)-1 {
				continue
			}
			p("    %7s  %8d  %10s  %10s  %11s  %10d", clock(smp.at), smp.copies, humanBytes(smp.rss), humanBytes(smp.heap),
				humanBytes(smp.memCache), smp.goroutines)
		}
	}

	p("")
	p("  targets:")
	check := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark, missed = "MISS", true
		}
		p("    %s  %s", mark, fmt.Sprintf(format, args...))
	}
	check(t.copies > 0, "copies done: %d", t.copies)
	check(t.wrongBytes == 0 && t.wrongCopies == 0, "zero wrong bytes: %d", t.wrongBytes)
	check(t.failed == 0, "zero failed copies: %d", t.failed)
	if m != nil {
		check(m["appliveryfs_checksum_mismatches_total"] == 0, "the mount saw no checksum mismatch: %.0f", m["appliveryfs_checksum_mismatches_total"])
	} else {
		check(false, "the mount saw no checksum mismatch: not measured (no metrics)")
	}
	first, last := s.first, s.last
	check(flat(first.rss, last.rss, first.ok && last.ok), "RSS flat: end at most %.0f%% above start (%s)",
		100*flatMargin, growth(first.rss, last.rss, first.ok && last.ok))
	check(flat(first.goroutines, last.goroutines, first.ok && last.ok), "goroutines flat: end at most %.0f%% above start (%s)",
		100*flatMargin, growth(first.goroutines, last.goroutines, first.ok && last.ok))
	check(len(s.notes) == 0 && s.stopErr == nil, "the mount served the whole run and stopped cleanly")
	if missed {
		p("  FAIL")
	} else {
		p("  PASS")
	}

	if len(t.bad) > 0 {
		p("")
		p("  failed and wrong copies (%d):", len(t.bad))
		for _, o := range t.bad[:min(len(t.bad), maxListed)] {
			p("    %s reader %d %s %s: %s", clock(o.at.Sub(s.began)), o.reader, o.how, o.t.path, o.describe())
		}
		if len(t.bad) > maxListed {
			p("    ... and %d more", len(t.bad)-maxListed)
		}
	}
	if len(s.notes) > 0 || s.stopErr != nil {
		p("")
		p("  findings:")
		for _, n := range s.notes {
			p("    %s", strings.ReplaceAll(n, "\n", "\n    "))
		}
		if s.stopErr != nil {
			p("    stopping the mount: %s", strings.ReplaceAll(s.stopErr.Error(), "\n", "\n    "))
		}
	}
	if len(s.caveats) > 0 {
		p("")
		p("  caveats:")
		for _, c := range s.caveats {
			p("    %s", c)
		}
	}
	records, warnings := logWarnings(s.m.LogPath)
	p("")
	p("  mount log %s: %d records, %d warnings or errors", s.m.LogPath, records, len(warnings))
	for _, line := range warnings[:min(len(warnings), maxListed)] {
		p("    %s", line)
	}
	if len(warnings) > maxListed {
		p("    ... and %d more", len(warnings)-maxListed)
	}
	return missed
}

// logWarnings counts the records of a JSON log and returns, verbatim, the
// lines at WARN or above and any that are not JSON (a panic's trace).
func logWarnings(path string) (records int, lines []string) {
	for _, rec := range readRecords(path) {
		records++
		switch rec.str("level") {
		case "DEBUG", "INFO":
		case "RAW":
			lines = append(lines, rec.str("msg"))
		default:
			lines = append(lines, rec.str(rawKey))
		}
	}
	return records, lines
}

// flat reports whether end is at most flatMargin above start. A fall is
// no leak: memory handed back to the system, idle connections closed.
func flat(start, end int64, ok bool) bool {
	return ok && start > 0 && float64(end) <= float64(start)*(1+flatMargin)
}

func growth(start, end int64, ok bool) string {
	if !ok || start <= 0 {
		return "not measured"
	}
	return fmt.Sprintf("%+.1f%%", 100*(float64(end)/float64(start)-1))
}

// joinSeries lists the values of a labelled metric as "value n, ...", in
// label order.
func joinSeries(m map[string]float64, name, label string) string {
	prefix := name + "{" + label + `="`
	var parts []string
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", strings.TrimSuffix(rest, `"}`), v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func joinCounts(m map[string]int64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// clock formats a time into the run as m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d/time.Minute), int(d%time.Minute/time.Second))
}

func humanBytes(n int64) string {
	const mib = 1 << 20
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
