//go:build linux

package main

import (
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// leverFigure is the figure a lever is judged on.
type leverFigure struct {
	key    string // names its results
	title  string // in the table
	capped bool   // storage capped as in figure 2
}

var (
	leverCapped = leverFigure{"capped", "2 cold cp, 32 MiB/s/conn + 20 ms", true}
	leverCold   = leverFigure{"cold", "1 cold cp, no caps", false}
	leverWarm   = leverFigure{"warm", "3a warm re-read, same mount", false}
)

// lever is one mount flag, measured at the binary's default and at alt
// with every other flag at its default.
type lever struct {
	flag string
	fig  leverFigure
	alt  string
	// tradeoff is what alt gives up beyond speed; it qualifies a verdict
	// in alt's favour.
	tradeoff string
}

// levers are the read-path tuning flags, in the order of the table.
var levers = []lever{
	{flag: "read-ahead-kb", fig: leverCapped, alt: "128"},
	{flag: "max-background", fig: leverCapped, alt: "12"},
	{flag: "prefetch-blocks", fig: leverCapped, alt: "1"},
	{flag: "block-size", fig: leverCapped, alt: "1M"},
	{flag: "block-size", fig: leverCapped, alt: "16M"},
	{flag: "disk-cache-size", fig: leverCold, alt: "0", tradeoff: "it gives up the persistent cache (3b)"},
	{flag: "block-size", fig: leverCold, alt: "1M"},
	{flag: "kernel-cache", fig: leverWarm, alt: "false"},
}

// leverNoise is the relative difference below which a lever's verdict
// keeps the default: a shared machine varies about this much between runs.
const leverNoise = 0.10

// mountConfig is a mount with at most one flag changed from its default.
type mountConfig struct{ flag, value string }

func (c mountConfig) name() string {
	if c.flag == "" {
		return "default"
	}
	return c.flag + "=" + c.value
}

// args are the mount arguments; --flag=value, so that boolean flags take
// their value too.
func (c mountConfig) args() []string {
	if c.flag == "" {
		return nil
	}
	return []string{"--" + c.flag + "=" + c.value}
}

// leverKey names the median throughput of a figure under a mount config.
func leverKey(fig leverFigure, c mountConfig) string { return "lever." + fig.key + "." + c.name() }

// helpDefault matches a flag's line in `appliveryfs mount --help`, e.g.
// `--block-size size   bytes fetched per storage request (default 4M)`.
var helpDefault = regexp.MustCompile(`(?m)^\s+--([a-z-]+)\S*(?: \S+)?\s.*\(default "?([^")]*)"?\)\s*$`)

// readMountDefaults asks the binary for its mount flags' defaults.
func (b *bench) readMountDefaults() error {
	out, err := command(b.bin, "mount", "--help")
	if err != nil && len(out) == 0 {
		return fmt.Errorf("read the mount flags' defaults: %w", err)
	}
	b.leverDefaults = map[string]string{}
	for _, m := range helpDefault.FindAllStringSubmatch(string(out), -1) {
		b.leverDefaults[m[1]] = m[2]
	}
	if len(b.leverDefaults) == 0 {
		return fmt.Errorf("read the mount flags' defaults: none in %s mount --help:\n%s", b.bin, out)
	}
	return nil
}

// leverState says why a lever cannot be measured, or "" if it can.
func (b *bench) leverState(l lever) string {
	def, ok := b.leverDefaults[l.flag]
	switch {
	case !ok:
		return "the binary has no --" + l.flag
	case def == l.alt:
		return "the alternative is the default"
	}
	return ""
}

// leverConfigs lists the mounts measured with or without caps: the
// defaults first, then one per lever alternative.
func (b *bench) leverConfigs(capped bool) []mountConfig {
	configs := []mountConfig{{}}
	seen := map[mountConfig]bool{}
	for _, l := range levers {
		c := mountConfig{l.flag, l.alt}
		if l.fig.capped != capped || seen[c] || b.leverState(l) != "" {
			continue
		}
		seen[c] = true
		configs = append(configs, c)
	}
	return configs
}

// runLevers measures every lever --runs times and returns what failed.
// Each run mounts every config once, in an order rotated from run to run
// so that no config always goes first. Without --keep-going it stops at
// the first failure; with it, a failed config is skipped from then on.
func (b *bench) runLevers() []error {
	if err := b.readMountDefaults(); err != nil {
		return []error{fmt.Errorf("levers: %w", err)}
	}
	down := map[string]bool{}
	var failures []error
	for i := range b.cfg.runs {
		for _, capped := range []bool{true, false} {
			configs := b.leverConfigs(capped)
			for j := range configs {
				c := configs[(i+j)%len(configs)]
				what := leverMountName(capped, c)
				if b.cleanup.Interrupted() {
					return failures
				}
				if down[what] {
					continue
				}
				runner.Progress("levers: run %d of %d: %s", i+1, b.cfg.runs, what)
				if err := b.leverMount(capped, c); err != nil {
					runner.Progress("levers: %s failed: %v", what, err)
					failures = append(failures, fmt.Errorf("levers, %s, run %d: %w", what, i+1, err))
					if !b.cfg.keepGoing {
						return failures
					}
					down[what] = true
				}
			}
		}
	}
	return failures
}

func leverMountName(capped bool, c mountConfig) string {
	if capped {
		return "capped " + c.name()
	}
	return "uncapped " + c.name()
}

// leverMount copies the file cold from a fresh mount with config c and a
// fresh --cache-dir; without caps it then re-reads it warm, after close
// and reopen, as figures 1 and 3a do.
func (b *bench) leverMount(capped bool, c mountConfig) error {
	cold, label := leverCold, "lever-"+c.name()
	bandwidth, latency := int64(0), time.Duration(0)
	if capped {
		cold, label = leverCapped, "lever-capped-"+c.name()
		bandwidth, latency = cappedBandwidth, cappedLatency
	}
	cacheDir, end, err := b.scenario(bandwidth, latency)
	if err != nil {
		return err
	}
	defer end()
	// Writes left over from earlier mounts go out before, not during,
	// the timed read.
	if _, err := command("sync"); err != nil {
		return err
	}
	m, err := b.mountOurs(label, cacheDir, c.args()...)
	return withMount(m, err, func(m *mountProc) error {
		k := leverKey(cold, c)
		if err := b.coldCopy(m, copyKeys{k, k + ".tokens", k + ".rss", k + ".cpu"}); err != nil {
			return err
		}
		if capped {
			return nil
		}
		size := b.fx.size()
		d, err := ddRead(m.path(), size)
		if err != nil {
			return err
		}
		b.res.add(leverKey(leverWarm, c), mibPerSec(size, d))
		runner.Progress("  %s: warm re-read %.0f MiB/s", m.Label, mibPerSec(size, d))
		return nil
	})
}

// leverRows builds the levers table from the results.
func (b *bench) leverRows() [][]string {
	var rows [][]string
	for _, l := range levers {
		def := b.leverDefaults[l.flag]
		r := []string{"--" + l.flag, l.fig.title,
			orDash(def) + " -> " + b.speed(leverKey(l.fig, mountConfig{})),
			l.alt + " -> " + b.speed(leverKey(l.fig, mountConfig{l.flag, l.alt})),
			"n/a", "n/a"}
		if why := b.leverState(l); why != "" {
			r[3], r[5] = l.alt+" -> not measured", why
			rows = append(rows, r)
			continue
		}
		base, ok1 := b.res.median(leverKey(l.fig, mountConfig{}))
		alt, ok2 := b.res.median(leverKey(l.fig, mountConfig{l.flag, l.alt}))
		if ok1 && ok2 && base > 0 {
			r[4] = fmt.Sprintf("%.2fx", alt/base)
			r[5] = leverVerdict(alt/base, l.tradeoff)
		}
		rows = append(rows, r)
	}
	return rows
}

// leverVerdict judges alternative/default; differences within leverNoise
// keep the default.
func leverVerdict(ratio float64, tradeoff string) string {
	switch {
	case ratio > 1+leverNoise && tradeoff != "":
		return "alternative faster, but " + tradeoff
	case ratio > 1+leverNoise:
		return "alternative better"
	case ratio < 1-leverNoise:
		return "keep default"
	}
	return fmt.Sprintf("keep default (within %.0f%%)", 100*leverNoise)
}

// reportLevers prints the levers table and how it was measured.
func (b *bench) reportLevers(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "levers: each alternative mounts with that one flag changed, every other flag (but --cache-size) at the")
	fmt.Fprintf(w, "        binary's default as `mount --help` prints it; each mount gets a fresh --cache-dir; medians of %d run(s),\n", b.cfg.runs)
	fmt.Fprintln(w, "        defaults and alternatives mounted in turn within each run; figures 1 and 3a share one mount per config")
	fmt.Fprintln(w)
	writeColumns(w, []string{"lever", "figure", "default -> MiB/s", "alternative -> MiB/s", "ratio", "verdict"}, b.leverRows())
	fmt.Fprintln(w)
	fmt.Fprintln(w, "note: --prefetch-blocks 1 keeps one block ahead (0 turns prefetch off)")
	fmt.Fprintf(w, "note: prefetch holds at most half of --cache-size %s, so with --block-size 16M it runs at most %d blocks ahead\n",
		humanBytes(cacheSize), cacheSize/(16<<20)/2)
	fmt.Fprintf(w, "note: a verdict keeps the default unless the alternative is more than %.0f%% faster\n", 100*leverNoise)
}
