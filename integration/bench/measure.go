//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const mib = 1 << 20

// command runs a tool with its working directory outside any mount and
// returns its combined output.
func command(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = os.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

var ddBytes = regexp.MustCompile(`(?m)^(\d+) bytes`)

// ddRead copies path to /dev/null with dd bs=1M and returns the wall
// time. It fails unless exactly want bytes were read.
func ddRead(path string, want int64) (time.Duration, error) {
	start := time.Now()
	out, err := command("dd", "if="+path, "of=/dev/null", "bs=1M")
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	m := ddBytes.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("dd %s: no byte count in its output: %s", path, bytes.TrimSpace(out))
	}
	if got, _ := strconv.ParseInt(string(m[1]), 10, 64); got != want {
		return 0, fmt.Errorf("dd %s: read %d bytes, want %d", path, got, want)
	}
	return elapsed, nil
}

// curlGet downloads url to /dev/null following redirects and returns the
// wall time. It fails unless exactly want bytes arrived.
func curlGet(url string, want int64) (elapsed, cpu time.Duration, err error) {
	start := time.Now()
	cmd := exec.Command("curl", "-sS", "-L", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download}", url)
	cmd.Dir = os.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	elapsed = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("curl %s: %w: %s", url, err, bytes.TrimSpace(out.Bytes()))
	}
	if got, _ := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64); got != want {
		return 0, 0, fmt.Errorf("curl %s: downloaded %q bytes, want %d", url, out.String(), want)
	}
	return elapsed, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// cpuPerGiB is CPU seconds spent per GiB of size.
func cpuPerGiB(cpu time.Duration, size int64) float64 {
	return cpu.Seconds() / (float64(size) / (1 << 30))
}

var unzipTotal = regexp.MustCompile(`(\d+)\s+files?\s*$`)

// unzipList runs unzip -l on path and returns the wall time. It fails
// unless the listing ends with the expected number of files.
func unzipList(path string, wantFiles int) (time.Duration, error) {
	start := time.Now()
	out, err := command("unzip", "-l", path)
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	m := unzipTotal.FindSubmatch(bytes.TrimSpace(out))
	if m == nil {
		return 0, fmt.Errorf("unzip -l %s: no file count in its output", path)
	}
	if got, _ := strconv.Atoi(string(m[1])); got != wantFiles {
		return 0, fmt.Errorf("unzip -l %s: listed %d files, want %d", path, got, wantFiles)
	}
	return elapsed, nil
}

// readHead opens path and reads its first len(want) bytes, timing open
// and read together, and checks them.
func readHead(path string, want []byte) (time.Duration, error) {
	buf := make([]byte, len(want))
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	_, err = io.ReadFull(f, buf)
	elapsed := time.Since(start)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(buf, want) {
		return 0, fmt.Errorf("read %s: the first %d bytes differ from the emulator's", path, len(want))
	}
	return elapsed, nil
}

// checkSize fails unless path is a file of size bytes. On a fresh mount
// it also walks the directories, so that a timed read that follows pays
// for no lookup.
func checkSize(path string, size int64) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("%s has %d bytes, want %d", path, st.Size(), size)
	}
	return nil
}

// dropCaches writes dirty pages out and empties the kernel's page cache,
// so that the next read of a local file comes from the disk.
func dropCaches() error {
	if _, err := command("sync"); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// mibPerSec is a throughput in MiB/s.
func mibPerSec(n int64, d time.Duration) float64 {
	return float64(n) / mib / d.Seconds()
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// results holds the samples of every metric, one per run.
type results map[string][]float64

func newResults() results { return results{} }

func (r results) add(key string, v float64) { r[key] = append(r[key], v) }

// median returns the median of a metric's samples; ok is false if there
// are none.
func (r results) median(key string) (v float64, ok bool) {
	s := slices.Clone(r[key])
	if len(s) == 0 {
		return 0, false
	}
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2, true
	}
	return s[len(s)/2], true
}

// worst returns the largest sample of a metric.
func (r results) worst(key string) (v float64, ok bool) {
	if len(r[key]) == 0 {
		return 0, false
	}
	return slices.Max(r[key]), true
}
