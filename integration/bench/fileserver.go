//go:build linux

package main

import (
	"bytes"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// fileServer is a static HTTP server for rclone's http backend: "/" is a
// directory index linking to one file, served with Range support. Like
// the emulator it can add latency before every answer and cap the body
// bandwidth of each response.
type fileServer struct {
	name    string
	data    []byte
	modTime time.Time
	url     string // base URL, with a trailing slash
	srv     *http.Server

	latency   atomic.Int64 // nanoseconds before each answer
	bandwidth atomic.Int64 // bytes per second per response; 0 = unlimited
	sent      atomic.Int64 // body bytes of the file written
}

// startFileServer serves data as name on a loopback port.
func startFileServer(name string, data []byte) (*fileServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("file server: %w", err)
	}
	fs := &fileServer{name: name, data: data, modTime: time.Now().Truncate(time.Second),
		url: "http://" + ln.Addr().String() + "/"}
	fs.srv = &http.Server{Handler: fs, ReadHeaderTimeout: 10 * time.Second}
	go fs.srv.Serve(ln) // returns ErrServerClosed after Close
	return fs, nil
}

func (fs *fileServer) Close() { fs.srv.Close() }

// setCaps sets the latency and per-response bandwidth of later answers.
func (fs *fileServer) setCaps(bandwidth int64, latency time.Duration) {
	fs.bandwidth.Store(bandwidth)
	fs.latency.Store(int64(latency))
}

func (fs *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// No stop channel: Close drops the connections, which ends the
	// requests' contexts.
	if !emulator.Sleep(r.Context(), time.Duration(fs.latency.Load()), nil) {
		return
	}
	switch r.URL.Path {
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><body><pre>\n<a href=\"%s\">%s</a>\n</pre></body></html>\n",
			html.EscapeString(url.PathEscape(fs.name)), html.EscapeString(fs.name))
	case "/" + fs.name:
		tw := &throttledWriter{ResponseWriter: w, rate: fs.bandwidth.Load(), sent: &fs.sent, req: r}
		http.ServeContent(tw, r, fs.name, fs.modTime, bytes.NewReader(fs.data))
	default:
		http.NotFound(w, r)
	}
}

// throttledWriter paces a response body to rate bytes per second, the
// way the emulator's storage does: chunks of about 20 ms of data, each
// flushed and followed by a pause that keeps the average at the cap.
type throttledWriter struct {
	http.ResponseWriter
	rate    int64 // 0 = unlimited
	sent    *atomic.Int64
	req     *http.Request
	start   time.Time
	written int64
}

func (t *throttledWriter) Write(p []byte) (int, error) {
	if t.rate <= 0 {
		n, err := t.ResponseWriter.Write(p)
		t.sent.Add(int64(n))
		return n, err
	}
	if t.start.IsZero() {
		t.start = time.Now()
	}
	chunk := int(min(max(t.rate/50, 1), 256<<10))
	total := 0
	for len(p) > 0 {
		n, err := t.ResponseWriter.Write(p[:min(chunk, len(p))])
		total += n
		t.written += int64(n)
		t.sent.Add(int64(n))
		if err != nil {
			return total, err
		}
		p = p[n:]
		http.NewResponseController(t.ResponseWriter).Flush()
		due := t.start.Add(time.Duration(float64(t.written) / float64(t.rate) * float64(time.Second)))
		if !emulator.Sleep(t.req.Context(), time.Until(due), nil) {
			return total, t.req.Context().Err()
		}
	}
	return total, nil
}
