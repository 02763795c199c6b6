//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// row is one line of the report's table.
type row struct{ figure, ours, baseline, ratio, target, met string }

// report prints the header, the tables and their notes.
func (b *bench) report(w io.Writer, failures []error) {
	fmt.Fprintf(w, "\nappliveryfs benchmark, %s\n", time.Now().Format(time.RFC1123))
	for _, line := range b.machine {
		fmt.Fprintln(w, "  "+line)
	}
	fmt.Fprintf(w, "  file:   %s .ipa (%d bytes, %d entries) from the in-process emulator on 127.0.0.1\n",
		humanBytes(b.fx.size()), b.fx.size(), b.cfg.entries)
	fmt.Fprintf(w, "  mount:  %s mount --cache-size %d (%s), other flags at their defaults; a fresh --cache-dir per mount\n",
		b.bin, cacheSize, humanBytes(cacheSize))
	fmt.Fprintf(w, "  runs:   %d per figure; medians, but peak RSS and exact counts show the worst run\n", b.cfg.runs)
	fmt.Fprintln(w, "  speed:  file size / wall time of `dd bs=1M of=/dev/null` (mounts, local copy), or of token mint + `curl -sS -L -o /dev/null`")
	fmt.Fprintf(w, "  caps:   2 and 5b: storage capped at %s/s per connection; 2, 5 and 5b: %v before every answer of every host\n",
		humanBytes(cappedBandwidth), cappedLatency)
	fmt.Fprintln(w, "          (rclone's file server gets the same caps); all other figures run without caps")
	fmt.Fprintln(w, "  cold:   drop_caches (sync; echo 3 > /proc/sys/vm/drop_caches) right before the local-copy reads marked")
	fmt.Fprintln(w, "          \"after drop_caches\" and before each read after a remount; 3b reuses the --cache-dir of 1")
	if b.cfg.figures {
		b.reportFigures(w)
	}
	if b.cfg.levers {
		b.reportLevers(w)
	}
	for _, err := range failures {
		fmt.Fprintf(w, "FAILED: %v\n", err)
	}
	if b.cfg.figures {
		met, total := countMet(b.rows())
		fmt.Fprintf(w, "targets met: %d of %d\n", met, total)
	}
	fmt.Fprintf(w, "daemon logs: %s\n", b.logs)
}

// reportFigures prints the figures' table and its notes.
func (b *bench) reportFigures(w io.Writer) {
	fmt.Fprintln(w)
	writeTable(w, b.rows())
	fmt.Fprintln(w)
	for _, n := range b.rcloneNotes {
		fmt.Fprintln(w, "note: "+n)
	}
	for _, mode := range b.cfg.rcloneModes {
		if err := b.rcloneDown[mode]; err != nil {
			fmt.Fprintf(w, "note: rclone --vfs-cache-mode %s failed, its rows are incomplete: %v\n", mode, err)
		}
	}
}

// rows builds the table from the results.
func (b *bench) rows() []row {
	var rows []row
	add := func(r ...row) { rows = append(rows, r...) }
	atLeast := func(x float64) func(float64) bool { return func(r float64) bool { return r >= x } }
	ahead := func(r float64) bool { return r > 1 }

	add(b.speedRow("1 cold cp, no caps", keyColdOurs, "mint + curl -L", keyColdCurl, ">= 0.9x curl", atLeast(0.9)))
	add(b.cpuRow("1   CPU-s/GiB of the process", "cold.cpu", "curl", keyColdCurlCPU, 3))
	add(b.rcloneRows("1   vs", "cold", "", nil)...)
	add(b.speedRow("2 cold cp, 32 MiB/s/conn + 20 ms", keyCappedOurs, "mint + curl -L", keyCappedCurl, ">= 6x curl", atLeast(6)))
	add(b.cpuRow("2   CPU-s/GiB of the process", "capped.cpu", "curl", keyCappedCurlCPU, 3))
	add(b.rcloneRows("2   vs", "capped", "> 1x (ahead)", ahead)...)
	add(b.speedRow("3a warm re-read, same mount", keyWarmOurs, "local copy, warm page cache", keyWarmLocal, ">= 0.8x local", atLeast(0.8)))
	add(b.rcloneRows("3a  vs", "warm", "", nil)...)
	add(b.speedRow("3b remount, same --cache-dir", keyRemountOurs, "local copy after drop_caches", keyRemountLocal, ">= 0.8x local", atLeast(0.8)))
	add(b.cpuRow("3b   CPU-s/GiB of the process", keyRemountCPU, "", "", 1.5))
	add(b.countRow("3b   storage bytes during it", keyRemountBytes, "0"))
	add(b.countRow("3b   tokens minted during it", keyRemountTokens, "0"))
	add(b.rcloneRemountRows()...)
	add(b.unzipRows()...)
	add(b.firstByteRow("5 first byte: open + 4 KiB, 20 ms", keyTTFBOurs, keyTTFBBase, true))
	add(b.firstByteRow("5b same, also 32 MiB/s/conn (info)", keyTTFBCappedOurs, keyTTFBCappedBase, false))
	add(b.rssRow("6 peak RSS (VmHWM) during 1", coldKeys.rss))
	add(b.rssRow("6 peak RSS (VmHWM) during 2", cappedKeys.rss))
	add(b.tokensRow("6 tokens minted per cp in 1", coldKeys.tokens))
	add(b.tokensRow("6 tokens minted per cp in 2", cappedKeys.tokens))
	return rows
}

// speedRow compares two median throughputs; ok judges ours/baseline, nil
// for a row without a target.
func (b *bench) speedRow(figure, oursKey, baseLabel, baseKey, target string, ok func(float64) bool) row {
	r := row{figure: figure, ours: b.speed(oursKey), baseline: baseLabel + ": " + b.speed(baseKey),
		ratio: "n/a", target: orDash(target), met: "-"}
	ours, ok1 := b.res.median(oursKey)
	base, ok2 := b.res.median(baseKey)
	if ok1 && ok2 && base > 0 {
		r.ratio = fmt.Sprintf("%.2fx", ours/base)
		if ok != nil {
			r.met = yesNo(ok(ours / base))
		}
	} else if ok != nil {
		r.met = "n/a"
	}
	return r
}

// rcloneRows compare a figure of ours with each rclone mode's.
func (b *bench) rcloneRows(prefix, what, target string, ok func(float64) bool) []row {
	if b.rclone == "" {
		return nil
	}
	ours := map[string]string{"cold": keyColdOurs, "capped": keyCappedOurs, "warm": keyWarmOurs}[what]
	var rows []row
	for _, mode := range b.cfg.rcloneModes {
		rows = append(rows, b.speedRow(prefix+" rclone vfs-cache-mode "+mode, ours,
			"rclone mount, --vfs-cache-mode "+mode, rcloneKey(mode, what), target, ok))
	}
	return rows
}

// rcloneRemountRows show rclone's reads after a remount (informational).
func (b *bench) rcloneRemountRows() []row {
	if b.rclone == "" {
		return nil
	}
	var rows []row
	for _, mode := range b.cfg.rcloneModes {
		r := b.speedRow("3b  vs rclone vfs-cache-mode "+mode, keyRemountOurs,
			"rclone mount, --vfs-cache-mode "+mode, rcloneKey(mode, "remount"), "", nil)
		if v, ok := b.res.worst(rcloneKey(mode, "remount-bytes")); ok {
			r.baseline += ", refetched " + humanBytes(int64(v))
		}
		rows = append(rows, r)
	}
	return rows
}

// countRow shows the worst run of a count whose target is zero.
// cpuRow shows the mount process's CPU seconds per GiB read (utime +
// stime) beside a baseline's, against the ceiling.
func (b *bench) cpuRow(figure, oursKey, baseLabel, baseKey string, ceiling float64) row {
	r := row{figure: figure, ours: "n/a", baseline: "-", ratio: "-", target: fmt.Sprintf("<= %.1f", ceiling), met: "n/a"}
	ours, ok := b.res.median(oursKey)
	if ok {
		r.ours, r.met = fmt.Sprintf("%.2f", ours), yesNo(ours <= ceiling)
	}
	if base, ok2 := b.res.median(baseKey); baseKey != "" && ok2 {
		r.baseline = fmt.Sprintf("%s: %.2f", baseLabel, base)
		if ok && base > 0 {
			r.ratio = fmt.Sprintf("%.1fx", ours/base)
		}
	}
	return r
}

func (b *bench) countRow(figure, key, target string) row {
	r := row{figure: figure, ours: "n/a", baseline: "-", ratio: "-", target: target, met: "n/a"}
	if v, ok := b.res.worst(key); ok {
		r.ours = fmt.Sprintf("%.0f", v)
		r.met = yesNo(v == 0)
	}
	return r
}

// unzipRows show the wall time of unzip -l and the bytes it cost.
func (b *bench) unzipRows() []row {
	timeRow := row{figure: "4 unzip -l, fresh mount: wall time", ours: b.millis(keyUnzipOurs),
		baseline: "local copy after drop_caches: " + b.millis(keyUnzipLocal), ratio: "n/a", target: "-", met: "-"}
	ours, ok1 := b.res.median(keyUnzipOurs)
	base, ok2 := b.res.median(keyUnzipLocal)
	if ok1 && ok2 && base > 0 {
		timeRow.ratio = fmt.Sprintf("%.2fx", ours/base)
	}
	bytesRow := row{figure: "4   storage bytes fetched", ours: "n/a", baseline: "file: " + humanBytes(b.fx.size()),
		ratio: "n/a", target: "<= 1% of the file", met: "n/a"}
	if v, ok := b.res.median(keyUnzipBytes); ok {
		pct := 100 * v / float64(b.fx.size())
		bytesRow.ours = humanBytes(int64(v))
		bytesRow.ratio = fmt.Sprintf("%.2f%%", pct)
		bytesRow.met = yesNo(pct <= 1)
	}
	return []row{timeRow, bytesRow}
}

// firstByteRow compares the time to first byte with the direct requests;
// the target is the baseline plus 5 ms.
func (b *bench) firstByteRow(figure, oursKey, baseKey string, judged bool) row {
	r := row{figure: figure, ours: b.millis(oursKey), baseline: "mint + 302 + 4 KiB Range (Go): " + b.millis(baseKey),
		ratio: "n/a", target: "<= baseline + 5 ms", met: "n/a"}
	if !judged {
		r.target, r.met = "(info)", "-"
	}
	ours, ok1 := b.res.median(oursKey)
	base, ok2 := b.res.median(baseKey)
	if ok1 && ok2 {
		r.ratio = fmt.Sprintf("%+.1f ms", ours-base)
		if judged {
			r.met = yesNo(ours-base <= 5)
		}
	}
	return r
}

// rssRow shows the worst peak RSS against --cache-size + 64 MiB.
func (b *bench) rssRow(figure, key string) row {
	limit := float64(cacheSize + rssHeadroom)
	r := row{figure: figure, ours: "n/a", baseline: fmt.Sprintf("--cache-size %s + 64 MiB", humanBytes(cacheSize)),
		ratio: "n/a", target: "<= " + humanBytes(int64(limit)), met: "n/a"}
	if v, ok := b.res.worst(key); ok {
		r.ours = humanBytes(int64(v))
		r.ratio = fmt.Sprintf("%.2fx", v/limit)
		r.met = yesNo(v <= limit)
	}
	return r
}

// tokensRow shows the tokens minted by each run's cold copy.
func (b *bench) tokensRow(figure, key string) row {
	r := row{figure: figure, ours: "n/a", baseline: "-", ratio: "-", target: "exactly 1", met: "n/a"}
	runs := b.res[key]
	if len(runs) == 0 {
		return r
	}
	vals := make([]string, len(runs))
	allOne := true
	for i, v := range runs {
		vals[i] = fmt.Sprintf("%.0f", v)
		allOne = allOne && v == 1
	}
	if slices.Min(runs) == slices.Max(runs) {
		r.ours = vals[0]
	} else {
		r.ours = strings.Join(vals, ", ") + " (per run)"
	}
	r.met = yesNo(allOne)
	return r
}

func (b *bench) speed(key string) string {
	if v, ok := b.res.median(key); ok {
		return fmt.Sprintf("%.1f MiB/s", v)
	}
	return "n/a"
}

func (b *bench) millis(key string) string {
	if v, ok := b.res.median(key); ok {
		return fmt.Sprintf("%.1f ms", v)
	}
	return "n/a"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func countMet(rows []row) (met, total int) {
	for _, r := range rows {
		switch r.met {
		case "yes":
			met++
			total++
		case "NO", "n/a":
			total++
		}
	}
	return met, total
}

// writeTable prints the figures' rows as a table.
func writeTable(w io.Writer, rows []row) {
	cells := make([][]string, len(rows))
	for i, r := range rows {
		cells[i] = []string{r.figure, r.ours, r.baseline, r.ratio, r.target, r.met}
	}
	writeColumns(w, []string{"figure", "appliveryfs", "baseline", "ratio", "target", "met?"}, cells)
}

// writeColumns prints a header and rows as aligned columns separated by
// " | ".
func writeColumns(w io.Writer, header []string, rows [][]string) {
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	line := func(cs []string) {
		padded := make([]string, len(cs))
		for i, c := range cs {
			padded[i] = c + strings.Repeat(" ", widths[i]-len(c))
		}
		fmt.Fprintln(w, strings.TrimRight(strings.Join(padded, " | "), " "))
	}
	line(header)
	seps := make([]string, len(widths))
	for i, n := range widths {
		seps[i] = strings.Repeat("-", n)
	}
	fmt.Fprintln(w, strings.Join(seps, "-+-"))
	for _, r := range rows {
		line(r)
	}
}
