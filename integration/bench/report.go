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

// aria2TargetMax is the largest size whose cold copies must keep up with
// aria2c; above it the comparison is informational.
const aria2TargetMax = 256 << 20

// report prints the header, the tables and their notes.
func (b *bench) report(w io.Writer, failures []error) {
	fmt.Fprintf(w, "\nappliveryfs benchmark, %s\n", time.Now().Format(time.RFC1123))
	for _, line := range b.machine {
		fmt.Fprintln(w, "  "+line)
	}
	b.reportFiles(w)
	fmt.Fprintf(w, "  mount:  %s mount --cache-size %d (%s), other flags at their defaults; a fresh --cache-dir per mount\n",
		b.bin, cacheSize, humanBytes(cacheSize))
	fmt.Fprintf(w, "  runs:   %d per figure; medians, but peak RSS and exact counts show the worst run\n", b.cfg.runs)
	fmt.Fprintln(w, "  speed:  file size / wall time of `dd bs=1M of=/dev/null` (mounts, local copy), or of token mint + `curl -sS -L -o /dev/null`,")
	fmt.Fprintf(w, "          or of token mint + resolving the 302 + `%s` into a scratch dir (its first download of each\n", aria2Command)
	fmt.Fprintln(w, "          size compared byte for byte); the baselines download from the same emulator as the mounts")
	fmt.Fprintln(w, "  CPU:    CPU-s/GiB = CPU time / GiB read: of the mount process over the timed read (its threads' run times in")
	fmt.Fprintln(w, "          /proc/PID/task/*/schedstat), of curl and aria2c over their whole run (utime + stime); rclone mount's as ours")
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

// reportFiles says which .ipa each part of the report reads.
func (b *bench) reportFiles(w io.Writer) {
	main := b.fx.main.size()
	fmt.Fprintf(w, "  files:  generated .ipa files of %d entries each, served by the in-process emulator on 127.0.0.1;\n", b.cfg.entries)
	if b.cfg.figures {
		fmt.Fprintf(w, "          1 and 2 (cold copies): %s, one build each;\n",
			strings.Join(mapSlice(b.coldFiles(), (*ipaFile).name), ", "))
		fmt.Fprintf(w, "          3 to 6: the --size file of %s (%d bytes)", b.fx.main.name(), main)
		if b.cfg.levers {
			fmt.Fprint(w, ", as the levers but where their figure says")
		}
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "          the levers: the --size file of %s (%d bytes) but where their figure says\n", b.fx.main.name(), main)
}

// reportFigures prints the figures' table and its notes.
func (b *bench) reportFigures(w io.Writer) {
	fmt.Fprintln(w)
	writeTable(w, b.rows())
	fmt.Fprintln(w)
	if b.aria2Note != "" {
		fmt.Fprintln(w, "note: "+b.aria2Note)
	} else {
		fmt.Fprintf(w, "note: the cold copies must keep up with aria2c up to %s; above, the aria2c rows are information\n",
			humanBytes(aria2TargetMax))
	}
	for _, n := range b.rcloneNotes {
		fmt.Fprintln(w, "note: "+n)
	}
	for _, mode := range b.cfg.rcloneModes {
		if err := b.rcloneDown[mode]; err != nil {
			fmt.Fprintf(w, "note: rclone --vfs-cache-mode %s failed, its rows are incomplete: %v\n", mode, err)
		}
	}
}

// tput names a throughput metric and the CPU-s/GiB measured with it (""
// for none).
type tput struct{ speed, cpu string }

// rows builds the table from the results.
func (b *bench) rows() []row {
	var rows []row
	add := func(r ...row) { rows = append(rows, r...) }
	warm, remount := tput{keyWarmOurs, keyWarmCPU}, tput{keyRemountOurs, keyRemountCPU}

	add(b.coldRows(figCold, ">= 0.9x curl", 0.9, 3)...)
	add(b.coldRows(figCapped, ">= 6x curl", 6, 3)...)
	add(b.speedRow("3a warm re-read, same mount", warm, "local copy, warm page cache", tput{keyWarmLocal, ""}, ">= 0.8x local", atLeast(0.8)))
	add(b.rcloneRows("3a  vs", "warm", warm, "", nil)...)
	add(b.speedRow("3b remount, same --cache-dir", remount, "local copy after drop_caches", tput{keyRemountLocal, ""}, ">= 0.8x local", atLeast(0.8)))
	add(b.cpuRow("3b   CPU-s/GiB of the process", keyRemountCPU, "", "", 1.5))
	add(b.countRow("3b   storage bytes during it", keyRemountBytes, "0"))
	add(b.countRow("3b   tokens minted during it", keyRemountTokens, "0"))
	add(b.rcloneRemountRows()...)
	add(b.unzipRows()...)
	add(b.firstByteRow("5 first byte: open + 4 KiB, 20 ms", keyTTFBOurs, keyTTFBBase, true))
	add(b.firstByteRow("5b same, also 32 MiB/s/conn (info)", keyTTFBCappedOurs, keyTTFBCappedBase, false))
	add(b.rssRow("6 peak RSS (VmHWM) during 1", b.coldKeys(figCold, "rss")))
	add(b.rssRow("6 peak RSS (VmHWM) during 2", b.coldKeys(figCapped, "rss")))
	add(b.tokensRow("6 tokens minted per cp in 1", b.coldKeys(figCold, "tokens")))
	add(b.tokensRow("6 tokens minted per cp in 2", b.coldKeys(figCapped, "tokens")))
	return rows
}

func atLeast(x float64) func(float64) bool { return func(r float64) bool { return r >= x } }

// coldRows are figure 1's or 2's rows at each size: the cold copy against
// curl and aria2c, and its CPU per GiB; rclone's beside the --size file's.
func (b *bench) coldRows(fig coldFigure, curlTarget string, curlMin, cpuCeiling float64) []row {
	var rows []row
	for _, f := range b.coldFiles() {
		ours := tput{b.key(fig, "appliveryfs", f), b.key(fig, "cpu", f)}
		curl := tput{b.key(fig, "curl", f), b.key(fig, "curl.cpu", f)}
		title := fmt.Sprintf("%s cold cp %s, %s", fig.num, f.name(), fig.caps)
		rows = append(rows, b.speedRow(title, ours, "mint + curl -L", curl, curlTarget, atLeast(curlMin)))
		if b.aria2c != "" {
			target, ok := ">= 1x aria2c", atLeast(1)
			if f.nominal > aria2TargetMax {
				target, ok = "(info)", nil
			}
			rows = append(rows, b.speedRow(fig.num+"   vs aria2c -x16 -s16", ours, "mint + 302 + aria2c",
				tput{b.key(fig, "aria2c", f), b.key(fig, "aria2c.cpu", f)}, target, ok))
		}
		rows = append(rows, b.cpuRow(fig.num+"   CPU-s/GiB of the process", ours.cpu, "curl", curl.cpu, cpuCeiling))
		if f == b.fx.main {
			var target string
			var ok func(float64) bool
			if fig == figCapped {
				target, ok = "> 1x (ahead)", func(r float64) bool { return r > 1 }
			}
			rows = append(rows, b.rcloneRows(fig.num+"   vs", fig.key, ours, target, ok)...)
		}
	}
	return rows
}

// coldKeys names a metric of fig's cold copies at every size.
func (b *bench) coldKeys(fig coldFigure, what string) []string {
	return mapSlice(b.coldFiles(), func(f *ipaFile) string { return b.key(fig, what, f) })
}

// speedRow compares two median throughputs, each with its CPU per GiB
// beside it; ok judges ours/baseline, nil for a row without a target.
func (b *bench) speedRow(figure string, ours tput, baseLabel string, base tput, target string, ok func(float64) bool) row {
	r := row{figure: figure, ours: b.speedCPU(ours.speed, ours.cpu), baseline: baseLabel + ": " + b.speedCPU(base.speed, base.cpu),
		ratio: "n/a", target: orDash(target), met: "-"}
	o, ok1 := b.res.median(ours.speed)
	bv, ok2 := b.res.median(base.speed)
	if ok1 && ok2 && bv > 0 {
		r.ratio = fmt.Sprintf("%.2fx", o/bv)
		if ok != nil {
			r.met = yesNo(ok(o / bv))
		}
	} else if ok != nil {
		r.met = "n/a"
	}
	return r
}

// rcloneRows compare a figure of ours with each rclone mode's.
func (b *bench) rcloneRows(prefix, what string, ours tput, target string, ok func(float64) bool) []row {
	if b.rclone == "" {
		return nil
	}
	var rows []row
	for _, mode := range b.cfg.rcloneModes {
		rows = append(rows, b.speedRow(prefix+" rclone vfs-cache-mode "+mode, ours,
			"rclone mount, --vfs-cache-mode "+mode, tput{rcloneKey(mode, what), rcloneKey(mode, what+".cpu")}, target, ok))
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
		r := b.speedRow("3b  vs rclone vfs-cache-mode "+mode, tput{keyRemountOurs, keyRemountCPU},
			"rclone mount, --vfs-cache-mode "+mode, tput{rcloneKey(mode, "remount"), rcloneKey(mode, "remount.cpu")}, "", nil)
		if v, ok := b.res.worst(rcloneKey(mode, "remount-bytes")); ok {
			r.baseline += ", refetched " + humanBytes(int64(v))
		}
		rows = append(rows, r)
	}
	return rows
}

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

// countRow shows the worst run of a count whose target is zero.
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
	bytesRow := row{figure: "4   storage bytes fetched", ours: "n/a", baseline: "file: " + b.fx.main.name(),
		ratio: "n/a", target: "<= 1% of the file", met: "n/a"}
	if v, ok := b.res.median(keyUnzipBytes); ok {
		pct := 100 * v / float64(b.fx.main.size())
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

// rssRow shows the worst peak RSS of the metrics keys, those of every
// size, against --cache-size + 64 MiB.
func (b *bench) rssRow(figure string, keys []string) row {
	limit := float64(cacheSize + rssHeadroom)
	r := row{figure: figure, ours: "n/a", baseline: fmt.Sprintf("--cache-size %s + 64 MiB", humanBytes(cacheSize)),
		ratio: "n/a", target: "<= " + humanBytes(int64(limit)), met: "n/a"}
	if v, ok := b.res.worstOf(keys); ok {
		r.ours = humanBytes(int64(v))
		r.ratio = fmt.Sprintf("%.2fx", v/limit)
		r.met = yesNo(v <= limit)
	}
	return r
}

// tokensRow shows the tokens minted by each cold copy of the metrics
// keys, those of every size and run.
func (b *bench) tokensRow(figure string, keys []string) row {
	r := row{figure: figure, ours: "n/a", baseline: "-", ratio: "-", target: "exactly 1", met: "n/a"}
	var runs []float64
	for _, k := range keys {
		runs = append(runs, b.res[k]...)
	}
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
		r.ours = strings.Join(vals, ", ") + " (per copy)"
	}
	r.met = yesNo(allOne)
	return r
}

// speedCPU is a median throughput with the median CPU per GiB beside it,
// when cpuKey has samples.
func (b *bench) speedCPU(speedKey, cpuKey string) string {
	v, ok := b.res.median(speedKey)
	if !ok {
		return "n/a"
	}
	s := fmt.Sprintf("%.1f MiB/s", v)
	if c, ok := b.res.median(cpuKey); ok && cpuKey != "" {
		s += fmt.Sprintf(", %.2f CPU-s/GiB", c)
	}
	return s
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
