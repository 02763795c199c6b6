package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"

	"github.com/spf13/pflag"

	"github.com/appliveryfs/appliveryfs/cache/disk"
)

// runCache is `appliveryfs cache du|prune|clear`: it measures and trims the
// persistent block cache. Every subcommand is safe while mounts use the
// directory, which then see the blocks that went as misses.
func runCache(fl *pflag.FlagSet, args []string, stdout, _ io.Writer) error {
	dir := fl.String("cache-dir", defaultCacheDir(), "persistent cache `DIR`")
	var maxSize byteSize
	fl.Var(&maxSize, "max-size", "prune: remove least recently used blocks until they total at most `SIZE` (e.g. 5G)")
	asJSON := fl.Bool("json", false, "du: print JSON")
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageErr("cache takes one subcommand: du, prune or clear")
	}
	sub := fl.Arg(0)
	switch {
	case sub != "du" && sub != "prune" && sub != "clear":
		return usageErr("unknown cache subcommand %q: want du, prune or clear", sub)
	case sub == "prune" && !fl.Changed("max-size"):
		return usageErr("cache prune needs --max-size SIZE")
	case sub != "prune" && fl.Changed("max-size"):
		return usageErr("--max-size is for cache prune")
	case sub != "du" && *asJSON:
		return usageErr("--json is for cache du")
	}

	before, err := statCacheDir(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "du":
		return printCacheDu(stdout, *dir, before, *asJSON)
	case "prune":
		return pruneCache(stdout, *dir, before, int64(maxSize))
	default:
		if err := disk.Clear(*dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cleared %s: removed %s and their metadata\n", *dir, describeBlocks(before))
		return nil
	}
}

// statCacheDir measures an existing cache directory. Mistyping --cache-dir
// must not make a new directory, so a missing one is an error.
func statCacheDir(dir string) (disk.DirStats, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return disk.DirStats{}, fmt.Errorf("cache directory %s does not exist", dir)
	}
	if err == nil && !fi.IsDir() {
		return disk.DirStats{}, fmt.Errorf("cache directory %s is not a directory", dir)
	}
	if err != nil {
		return disk.DirStats{}, fmt.Errorf("cache directory: %w", err)
	}
	return disk.StatDir(dir)
}

func printCacheDu(w io.Writer, dir string, st disk.DirStats, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Dir        string `json:"dir"`
			DiskBytes  int64  `json:"diskBytes"`
			Blocks     int    `json:"blocks"`
			BlockBytes int64  `json:"blockBytes"`
			Files      int    `json:"files"`
		}{dir, st.DiskBytes, st.Blocks, st.BlockBytes, st.Files})
	}
	_, err := fmt.Fprintf(w, "%s: %d bytes (%s) on disk; %s\n", dir, st.DiskBytes, humanBytes(st.DiskBytes), describeBlocks(st))
	return err
}

// pruneCache removes least recently used blocks of dir until they total at
// most maxBytes.
func pruneCache(w io.Writer, dir string, before disk.DirStats, maxBytes int64) error {
	removed, freed := 0, int64(0)
	// Opening writes (it makes the tree and sweeps stale temp files), so a
	// directory with nothing to prune is left as it is.
	if before.BlockBytes > maxBytes {
		// No cap of its own: Open must not evict, Prune decides.
		c, err := disk.Open(dir, math.MaxInt64)
		if err != nil {
			return err
		}
		defer c.Close()
		if removed, freed, err = c.Prune(maxBytes); err != nil {
			return err
		}
	}
	after, err := disk.StatDir(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "pruned %s to at most %s: removed %s (%s); %s remain\n",
		dir, humanBytes(maxBytes), plural(removed, "block"), humanBytes(freed), describeBlocks(after))
	return nil
}

// describeBlocks is e.g. "12 blocks of 3 files (48.0 MiB)".
func describeBlocks(st disk.DirStats) string {
	return fmt.Sprintf("%s of %s (%s)", plural(st.Blocks, "block"), plural(st.Files, "file"), humanBytes(st.BlockBytes))
}

// plural is "1 block", "2 blocks".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
