package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
	"github.com/appliveryfs/appliveryfs/cache/disk"
	"github.com/appliveryfs/appliveryfs/fs"
)

// observed is one mount's moving parts, read for the status file,
// SIGUSR1 and metrics: the counters each package keeps already.
type observed struct {
	dir       string
	started   time.Time
	blockSize int64
	client    *api.Client
	cache     *cache.Cache
	store     *disk.Cache
	fsys      *fs.FS
}

// summary is the status as text: the figures of the metrics, and a line
// per open file.
func (o *observed) summary() []byte {
	var b bytes.Buffer
	a, c, f := o.client.Stats(), o.cache.Stats(), o.fsys.Stats()
	fmt.Fprintf(&b, "appliveryfs on %s, up %s\n", o.dir, time.Since(o.started).Round(time.Second))
	fmt.Fprintf(&b, "storage:      %s fetched in %d blocks (%d of them again); %s served to readers\n",
		humanBytes(c.FetchedBytes), c.Fetches, c.Refetches, humanBytes(c.ServedBytes))
	fmt.Fprintf(&b, "memory cache: %d hits, %d misses; %d of %d blocks in use (%s)\n",
		c.MemHits, c.MemMisses, c.MemoryBlocks, c.MemorySlots, humanBytes(int64(c.MemoryBlocks)*o.blockSize))
	fmt.Fprintf(&b, "disk cache:   %d hits, %d misses; %s used\n", c.DiskHits, c.DiskMisses, humanBytes(o.store.Usage()))
	fmt.Fprintf(&b, "prefetch:     %d blocks, %d evicted unread\n", c.Prefetches, c.PrefetchWasted)
	fmt.Fprintf(&b, "tokens:       %d minted; re-mints: %d %s, %d %s, %d %s\n", a.TokensMinted,
		a.RemintsExpiredURL, api.ReasonExpiredURL, a.RemintsExpiredToken, api.ReasonExpiredToken,
		a.RemintsSpentToken, api.ReasonSpentToken)
	fmt.Fprintf(&b, "retries:      %d %s, %d %s, %d %s\n", a.RetriesServerError, api.CauseServerError,
		a.RetriesThrottled, api.CauseThrottled, a.RetriesCut, api.CauseCut)
	fmt.Fprintf(&b, "checksums:    %d files verified, %d mismatched\n", c.Verified, c.Mismatches)
	mean := time.Duration(0)
	if n := f.ReadLatency.Count; n > 0 {
		mean = time.Duration(f.ReadLatency.Sum / float64(n) * float64(time.Second))
	}
	fmt.Fprintf(&b, "reads:        %d, mean %s\n", f.ReadLatency.Count, mean.Round(time.Microsecond))
	fmt.Fprintf(&b, "errors:      ")
	if len(f.Errors) == 0 {
		fmt.Fprintf(&b, " none")
	}
	for _, name := range slices.Sorted(maps.Keys(f.Errors)) {
		fmt.Fprintf(&b, " %s %d", name, f.Errors[name])
	}
	fmt.Fprintf(&b, "\nopen files:   %d\n", len(f.OpenFiles))
	for _, of := range f.OpenFiles {
		rate := float64(of.Fetched) / max(time.Since(of.Since).Seconds(), 0.001)
		fmt.Fprintf(&b, "  /%s  %s of %s fetched, %s/s\n", of.Path, humanBytes(of.Fetched), humanBytes(of.Size), humanBytes(int64(rate)))
	}
	return b.Bytes()
}
