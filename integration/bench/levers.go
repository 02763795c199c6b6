//go:build linux

package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/appliveryfs/appliveryfs/integration/runner"
)

// leverFigure is the figure a lever is judged on: a cold copy from a
// fresh mount, or a read after the uncapped cold copy of the --size file.
type leverFigure struct {
	key    string // names its results
	title  string // in the table; %s is the size of the file read
	capped bool   // storage capped as in figure 2
	size   int64  // of the file read; 0 for the --size file
	after  string // "" for a cold copy; else what follows leverCold's: "warm" or "remount"
}

// The size of leverCappedSmall: a typical small build, where how fast
// prefetch opens up weighs most.
const leverSmallSize = 64 << 20

var (
	leverCapped      = leverFigure{key: "capped", title: "2 cold cp %s, 32 MiB/s/conn + 20 ms", capped: true}
	leverCappedSmall = leverFigure{key: "capped-small", title: "2 cold cp %s, 32 MiB/s/conn + 20 ms", capped: true, size: leverSmallSize}
	leverCold        = leverFigure{key: "cold", title: "1 cold cp %s, no caps"}
	leverWarm        = leverFigure{key: "warm", title: "3a warm re-read %s, same mount", after: "warm"}
	leverRemount     = leverFigure{key: "remount", title: "3b remount %s, same --cache-dir", after: "remount"}
)

// leverCopies are the cold copies the levers are measured on, in the
// order each run mounts them.
var leverCopies = []leverFigure{leverCapped, leverCappedSmall, leverCold}

// copyOf is the cold copy fig is measured on or after.
func copyOf(fig leverFigure) leverFigure {
	if fig.after != "" {
		return leverCold
	}
	return fig
}

// lever is one mount flag, or one variable of the mount's environment,
// measured at its default and at alt with everything else at its
// default.
type lever struct {
	flag string // a mount flag, without "--"
	env  string // or an environment variable of the mount, unset by default
	fig  leverFigure
	alt  string
	// tradeoff is what alt gives up beyond speed; it qualifies a verdict
	// in alt's favour.
	tradeoff string
}

// levers are the read-path tuning flags and runtime settings, in the
// order of the table.
var levers = []lever{
	{flag: "read-ahead-kb", fig: leverCapped, alt: "128"},
	{flag: "max-background", fig: leverCapped, alt: "12"},
	{flag: "prefetch-blocks", fig: leverCapped, alt: "1"},
	{flag: "block-size", fig: leverCapped, alt: "1M"},
	{flag: "block-size", fig: leverCapped, alt: "16M"},
	{flag: "start-window", fig: leverCappedSmall, alt: "0"},
	{flag: "disk-cache-size", fig: leverCold, alt: "0", tradeoff: "it gives up the persistent cache (3b)"},
	{flag: "block-size", fig: leverCold, alt: "1M"},
	{flag: "direct-io", fig: leverCold, alt: "false"},
	{flag: "direct-io", fig: leverRemount, alt: "false"},
	{flag: "zero-copy", fig: leverCold, alt: "false"},
	{flag: "reuse-buffers", fig: leverCold, alt: "false"},
	{flag: "kernel-cache", fig: leverWarm, alt: "false"},
	{flag: "cache-size", fig: leverCold, alt: "64M"},
	{flag: "cache-size", fig: leverCold, alt: "1G"},
	{flag: "cache-size", fig: leverCapped, alt: "64M"},
	{env: "GOMAXPROCS", fig: leverCold, alt: "1", tradeoff: "the mount then uses one core whatever the machine has"},
	{env: "GOGC", fig: leverCold, alt: "off", tradeoff: "the heap then grows to the mount's memory limit between collections"},
	{env: "GOGC", fig: leverCold, alt: "400"},
}

// leverSizes are the sizes of the files the levers read besides --size's.
func leverSizes() []int64 {
	var sizes []int64
	for _, l := range levers {
		if l.fig.size != 0 && !slices.Contains(sizes, l.fig.size) {
			sizes = append(sizes, l.fig.size)
		}
	}
	return sizes
}

// leverEnvNames are the environment variables the levers set.
func leverEnvNames() []string {
	var names []string
	for _, l := range levers {
		if l.env != "" && !slices.Contains(names, l.env) {
			names = append(names, l.env)
		}
	}
	return names
}

// leverNoise is the relative difference below which a lever's verdict
// keeps the default: a shared machine varies about this much between runs.
const leverNoise = 0.10

// mountConfig is a mount with at most one flag, or one variable of its
// environment, changed from its default.
type mountConfig struct{ flag, envVar, value string }

func (l lever) config() mountConfig { return mountConfig{l.flag, l.env, l.alt} }

// name is the lever in the table, e.g. "--block-size" or "env GOGC=off".
func (l lever) name() string {
	if l.env != "" {
		return "env " + l.env + "=" + l.alt
	}
	return "--" + l.flag
}

func (c mountConfig) name() string {
	switch {
	case c.flag != "":
		return c.flag + "=" + c.value
	case c.envVar != "":
		return c.envVar + "=" + c.value
	}
	return "default"
}

// args are the mount arguments; --flag=value, so that boolean flags take
// their value too.
func (c mountConfig) args() []string {
	if c.flag == "" {
		return nil
	}
	return []string{"--" + c.flag + "=" + c.value}
}

// environ is what the mount's environment gets on top of mountEnv's.
func (c mountConfig) environ() []string {
	if c.envVar == "" {
		return nil
	}
	return []string{c.envVar + "=" + c.value}
}

// leverKey names the median throughput of a figure under a mount config;
// with ".cpu", ".rss" and ".tokens" appended it names the others.
func leverKey(fig leverFigure, c mountConfig) string { return "lever." + fig.key + "." + c.name() }

// helpFlag matches a flag's line in `appliveryfs mount --help`, e.g.
// `--block-size size   bytes fetched per storage request (default 4M)`:
// the name, "[=true|false]" for a boolean, the value's type, and the
// default, which pflag leaves out when it is the type's zero value.
var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)(\[=true\|false\])?(?: (\S+))?\s{2,}.*?(?:\(default "?([^")]*)"?\))?\s*$`)

// readMountDefaults asks the binary for its mount flags' defaults.
func (b *bench) readMountDefaults() error {
	out, err := command(b.bin, "mount", "--help")
	if err != nil && len(out) == 0 {
		return fmt.Errorf("read the mount flags' defaults: %w", err)
	}
	b.leverDefaults = map[string]string{}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		def := m[4]
		if !strings.Contains(m[0], "(default ") {
			def = zeroValue(m[2] != "", m[3])
		}
		b.leverDefaults[m[1]] = def
	}
	if len(b.leverDefaults) == 0 {
		return fmt.Errorf("read the mount flags' defaults: no flags in %s mount --help:\n%s", b.bin, out)
	}
	return nil
}

// zeroValue is the default of a flag whose --help shows none, as a
// lever's alternative would spell it.
func zeroValue(boolean bool, typ string) string {
	switch {
	case boolean:
		return "false"
	case typ == "duration":
		return "0s"
	case typ == "string", typ == "stringArray":
		return ""
	}
	return "0" // int, size and other numbers
}

// leverDefault is the lever's default as the table shows it.
func (b *bench) leverDefault(l lever) string {
	if l.env != "" {
		return "unset"
	}
	return orDash(b.leverDefaults[l.flag])
}

// leverState says why a lever cannot be measured, or "" if it can.
func (b *bench) leverState(l lever) string {
	if l.env != "" {
		return "" // the Go runtime of any binary reads it
	}
	def, ok := b.leverDefaults[l.flag]
	switch {
	case !ok:
		return "the binary has no --" + l.flag
	case def == l.alt:
		return "the alternative is the default"
	}
	return ""
}

// leverConfigs lists the mounts of one cold copy: the defaults first,
// then one per lever alternative measured on or after it. It is nil when
// no lever of that copy can be measured.
func (b *bench) leverConfigs(cp leverFigure) []mountConfig {
	configs := []mountConfig{{}}
	for _, l := range levers {
		c := l.config()
		if copyOf(l.fig) != cp || slices.Contains(configs, c) || b.leverState(l) != "" {
			continue
		}
		configs = append(configs, c)
	}
	if len(configs) == 1 {
		return nil
	}
	return configs
}

// leverNeeds reports whether the mount of c measures fig: the default
// measures every figure, an alternative only those of its levers.
func (b *bench) leverNeeds(fig leverFigure, c mountConfig) bool {
	if c == (mountConfig{}) {
		return true
	}
	for _, l := range levers {
		if l.fig == fig && l.config() == c && b.leverState(l) == "" {
			return true
		}
	}
	return false
}

// leverFile is the file fig reads.
func (b *bench) leverFile(fig leverFigure) *ipaFile {
	if fig.size == 0 {
		return b.fx.main
	}
	return b.fx.bySize[fig.size]
}

func (b *bench) leverTitle(fig leverFigure) string {
	return fmt.Sprintf(fig.title, b.leverFile(fig).name())
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
		for _, cp := range leverCopies {
			configs := b.leverConfigs(cp)
			for j := range configs {
				c := configs[(i+j)%len(configs)]
				what := cp.key + " " + c.name()
				if b.cleanup.Interrupted() {
					return failures
				}
				if down[what] {
					continue
				}
				runner.Progress("levers: run %d of %d: %s", i+1, b.cfg.runs, what)
				if err := b.leverMount(cp, c); err != nil {
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

// leverMount copies cp's file cold from a fresh mount with config c and a
// fresh --cache-dir, as figures 1 and 2 do. After the uncapped copy it
// re-reads the file warm, after close and reopen, as figure 3a does, and
// then from a new mount on the same --cache-dir, as figure 3b does, when
// c measures those.
func (b *bench) leverMount(cp leverFigure, c mountConfig) error {
	bandwidth, latency := figCold.bandwidth, figCold.latency
	if cp.capped {
		bandwidth, latency = figCapped.bandwidth, figCapped.latency
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
	f, label := b.leverFile(cp), "lever-"+cp.key+"-"+c.name()
	m, err := b.mountOurs(label, cacheDir, f, c)
	err = withMount(m, err, func(m *mountProc) error {
		k := leverKey(cp, c)
		if err := b.coldCopy(m, f.size(), copyKeys{k, k + ".tokens", k + ".rss", k + ".cpu"}); err != nil {
			return err
		}
		if cp != leverCold || !b.leverNeeds(leverWarm, c) {
			return nil
		}
		return b.leverRead(leverWarm, c, m, f.size())
	})
	if err != nil || cp != leverCold || !b.leverNeeds(leverRemount, c) {
		return err
	}
	m, err = b.mountOurs(label+"-remount", cacheDir, f, c)
	return withMount(m, err, func(m *mountProc) error {
		if err := checkSize(m.path(), f.size()); err != nil {
			return err
		}
		if err := dropCaches(); err != nil {
			return err
		}
		return b.leverRead(leverRemount, c, m, f.size())
	})
}

// leverRead times a whole-file read of fig under config c and records it.
func (b *bench) leverRead(fig leverFigure, c mountConfig, m *mountProc, size int64) error {
	s, err := timedRead(m, size)
	if err != nil {
		return err
	}
	k := leverKey(fig, c)
	b.res.add(k, mibPerSec(size, s.d))
	b.res.add(k+".cpu", cpuPerGiB(s.cpu, size))
	runner.Progress("  %s: %s read %.0f MiB/s, %.2f CPU-s/GiB", m.Label, fig.after, mibPerSec(size, s.d), cpuPerGiB(s.cpu, size))
	return nil
}

// leverRows builds the levers table from the results.
func (b *bench) leverRows() [][]string {
	var rows [][]string
	for _, l := range levers {
		def, alt := leverKey(l.fig, mountConfig{}), leverKey(l.fig, l.config())
		r := []string{l.name(), b.leverTitle(l.fig),
			b.leverDefault(l) + " -> " + b.speedCPU(def, def+".cpu"),
			l.alt + " -> " + b.speedCPU(alt, alt+".cpu"),
			"n/a", "n/a"}
		if why := b.leverState(l); why != "" {
			r[3], r[5] = l.alt+" -> not measured", why
			rows = append(rows, r)
			continue
		}
		r[4], r[5] = b.leverJudgement(l, def, alt)
		rows = append(rows, r)
	}
	return rows
}

// leverJudgement compares the alternative's medians with the default's:
// the ratios of throughput and CPU per GiB, and the verdict.
func (b *bench) leverJudgement(l lever, def, alt string) (ratio, verdict string) {
	base, ok1 := b.res.median(def)
	got, ok2 := b.res.median(alt)
	if !ok1 || !ok2 || base <= 0 {
		return "n/a", "n/a"
	}
	speed := got / base
	ratio = fmt.Sprintf("%.2fx", speed)
	cpu := 0.0 // unknown
	baseCPU, ok1 := b.res.median(def + ".cpu")
	gotCPU, ok2 := b.res.median(alt + ".cpu")
	if ok1 && ok2 && baseCPU > 0 {
		cpu = gotCPU / baseCPU
		ratio += fmt.Sprintf(", CPU %.2fx", cpu)
	}
	tradeoff := l.tradeoff
	limit := float64(cacheSize + rssHeadroom)
	var budget sizeFlag
	if l.flag == "cache-size" && budget.Set(l.alt) == nil {
		limit = float64(int64(budget) + rssHeadroom) // the budget it was given
	}
	if rss, ok := b.res.worst(leverKey(copyOf(l.fig), l.config()) + ".rss"); ok && rss > limit {
		tradeoff = strings.TrimPrefix(tradeoff+"; ", "; ") + fmt.Sprintf("peak RSS %s > %s", humanBytes(int64(rss)), humanBytes(int64(limit)))
	}
	return ratio, leverVerdict(speed, cpu, tradeoff)
}

// leverVerdict judges the alternative by its throughput relative to the
// default's and, when that is within leverNoise, by its CPU per GiB (cpu,
// relative too; 0 when unknown). Differences within leverNoise keep the
// default.
func leverVerdict(speed, cpu float64, tradeoff string) string {
	var better string
	switch {
	case speed > 1+leverNoise:
		better = "alternative faster"
	case speed < 1-leverNoise:
		return "keep default"
	case cpu > 0 && cpu < 1-leverNoise:
		better = "alternative cheaper in CPU"
	case cpu > 1+leverNoise:
		return fmt.Sprintf("keep default (as fast within %.0f%%, and cheaper in CPU)", 100*leverNoise)
	default:
		return fmt.Sprintf("keep default (within %.0f%%)", 100*leverNoise)
	}
	if tradeoff != "" {
		return better + ", but " + tradeoff
	}
	return better
}

// reportLevers prints the levers table and how it was measured.
func (b *bench) reportLevers(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "levers: each alternative mounts with that one flag, or one variable of the mount's environment, changed, every")
	fmt.Fprintln(w, "        other flag (but --cache-size) at the binary's default as `mount --help` prints it; each mount gets a fresh")
	fmt.Fprintf(w, "        --cache-dir; medians of %d run(s), defaults and alternatives mounted in turn within each run; 3a re-reads\n", b.cfg.runs)
	fmt.Fprintln(w, "        in the mount of 1, 3b mounts again on its --cache-dir and reads after drop_caches")
	fmt.Fprintln(w)
	writeColumns(w, []string{"lever", "figure", "default -> MiB/s, CPU-s/GiB", "alternative -> MiB/s, CPU-s/GiB", "ratio", "verdict"}, b.leverRows())
	fmt.Fprintln(w)
	fmt.Fprintln(w, "note: --prefetch-blocks 1 keeps one block ahead (0 turns prefetch off)")
	fmt.Fprintf(w, "note: prefetch holds at most half of --cache-size %s, so with --block-size 16M it runs at most %d blocks ahead\n",
		humanBytes(cacheSize), cacheSize/(16<<20)/2)
	fmt.Fprintln(w, "note: env levers set one Go runtime variable for the mount, unset otherwise (GOMAXPROCS = the CPUs it may use,")
	fmt.Fprintln(w, "      GOGC = 100); the memory limit the mount sets itself stays in force, so with GOGC=off it collects only near it")
	fmt.Fprintf(w, "note: a verdict keeps the default unless the alternative is more than %.0f%% faster, or as fast and more than %.0f%%\n",
		100*leverNoise, 100*leverNoise)
	fmt.Fprintf(w, "      cheaper in CPU; a peak RSS above --cache-size + %s qualifies it\n", humanBytes(rssHeadroom))
}
