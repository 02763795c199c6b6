package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/appliveryfs/appliveryfs/api"
)

// The metrics, read from the counters api, cache and fs keep: a collector
// over them, not a second set of counters to keep in step.
var (
	// In no particular order; allMetrics lists them for Describe.
	mHits      = metric("cache_hits_total", "Block reads served by a cache tier.", "tier")
	mMisses    = metric("cache_misses_total", "Block reads a cache tier did not have.", "tier")
	mRetries   = metric("retries_total", "Requests retried after a temporary failure, by cause.", "cause")
	mFetched   = metric("storage_fetched_bytes_total", "Bytes fetched from storage.")
	mServed    = metric("served_bytes_total", "Bytes returned to readers.")
	mPrefetch  = metric("prefetched_blocks_total", "Blocks fetched ahead of a sequential reader.")
	mWasted    = metric("prefetch_wasted_blocks_total", "Prefetched blocks evicted before any reader read them.")
	mRemints   = metric("remints_total", "Tokens minted again, by what made the previous URL or token unusable.", "reason")
	mMinted    = metric("tokens_minted_total", "Download tokens minted.")
	mRefetched = metric("refetched_blocks_total", "Blocks fetched from storage again after an eviction.")
	mErrors    = metric("errors_total", "Errors returned to readers, by errno.", "errno")
	mVerified  = metric("files_verified_total", "Files whose whole content matched the API's checksum.")
	mMismatch  = metric("checksum_mismatches_total", "Files whose content did not match the API's checksum.")
	mOpen      = metric("open_files", "Build files open.")
	mDisk      = metric("disk_cache_bytes", "Bytes of blocks in the disk cache.")
	mMemory    = metric("memory_cache_bytes", "Memory held by blocks: cached, in flight, queued for disk.")
	mReadSecs  = metric("read_duration_seconds", "Time to answer a READ of a build file.")
	allMetrics = []*prometheus.Desc{mFetched, mServed, mHits, mMisses, mPrefetch, mWasted, mRefetched, mMinted, mRemints,
		mRetries, mVerified, mMismatch, mErrors, mOpen, mDisk, mMemory, mReadSecs}
)

func metric(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("appliveryfs_"+name, help, labels, nil)
}

// Describe and Collect make observed a prometheus.Collector.
func (o *observed) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allMetrics {
		ch <- d
	}
}

func (o *observed) Collect(ch chan<- prometheus.Metric) {
	a, c, f := o.client.Stats(), o.cache.Stats(), o.fsys.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(mFetched, c.FetchedBytes)
	counter(mServed, c.ServedBytes)
	counter(mHits, c.MemHits, "memory")
	counter(mHits, c.DiskHits, "disk")
	counter(mMisses, c.MemMisses, "memory")
	counter(mMisses, c.DiskMisses, "disk")
	counter(mPrefetch, c.Prefetches)
	counter(mWasted, c.PrefetchWasted)
	counter(mRefetched, c.Refetches)
	counter(mMinted, a.TokensMinted)
	counter(mRemints, a.RemintsExpiredURL, api.ReasonExpiredURL)
	counter(mRemints, a.RemintsExpiredToken, api.ReasonExpiredToken)
	counter(mRemints, a.RemintsSpentToken, api.ReasonSpentToken)
	counter(mRetries, a.RetriesServerError, api.CauseServerError)
	counter(mRetries, a.RetriesThrottled, api.CauseThrottled)
	counter(mRetries, a.RetriesCut, api.CauseCut)
	counter(mVerified, c.Verified)
	counter(mMismatch, c.Mismatches)
	for errno, n := range f.Errors {
		counter(mErrors, n, errno)
	}
	gauge(mOpen, int64(len(f.OpenFiles)))
	gauge(mDisk, o.store.Usage())
	gauge(mMemory, int64(c.MemoryBlocks)*o.blockSize)
	h := f.ReadLatency
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(mReadSecs, h.Count, h.Sum, buckets)
}

// serveMetrics starts serving the metrics on addr; the listener is open
// when it returns, so a taken port fails the mount before it happens.
// The returned function stops the server.
func serveMetrics(addr string, o *observed, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(o, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err.Error())
		}
	}()
	log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
