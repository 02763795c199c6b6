//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/runner"
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

// aria2Name is the file aria2Get writes in its directory.
const aria2Name = "aria2.ipa"

// aria2Args are aria2c's options for the baseline: 16 connections to the
// one server, and pieces small enough (-k, default 20M) that a 64 MiB
// file is really split 16 ways. No retries, so that a failure shows.
var aria2Args = []string{"-x16", "-s16", "-k1M", "--max-tries=1", "--no-conf=true",
	"--allow-overwrite=true", "--auto-file-renaming=false", "--file-allocation=none",
	"--console-log-level=warn", "--summary-interval=0", "--show-console-readout=false",
	"--download-result=hide", "--no-proxy=127.0.0.1,localhost"}

// aria2Command is aria2Args as the report names them.
const aria2Command = "aria2c -x16 -s16 -k1M --file-allocation=none"

// aria2Get downloads url with aria2c into dir/aria2Name and returns the
// CPU time aria2c used. It fails unless exactly want bytes arrived.
func aria2Get(aria2c, url, dir string, want int64) (cpu time.Duration, err error) {
	cmd := exec.Command(aria2c, append(slices.Clone(aria2Args), "-d", dir, "-o", aria2Name, url)...)
	cmd.Dir = os.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("aria2c %s: %w: %s", url, err, bytes.TrimSpace(out.Bytes()))
	}
	st, err := os.Stat(filepath.Join(dir, aria2Name))
	if err != nil {
		return 0, fmt.Errorf("aria2c %s: %w", url, err)
	}
	if st.Size() != want {
		return 0, fmt.Errorf("aria2c %s: downloaded %d bytes, want %d", url, st.Size(), want)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// sameContent fails unless the file at path holds exactly want.
func sameContent(path string, want []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for off := 0; ; {
		n, err := io.ReadFull(f, buf)
		if n > len(want)-off || !bytes.Equal(buf[:n], want[off:off+n]) {
			return fmt.Errorf("%s differs from the emulator's bytes in the MiB at offset %d", path, off)
		}
		off += n
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			if off != len(want) {
				return fmt.Errorf("%s has %d bytes, want %d", path, off, len(want))
			}
			return nil
		case err != nil:
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}

// cpuTime is the CPU time a process has used so far: the run times of
// its threads in /proc/PID/task/*/schedstat, which count nanoseconds where
// /proc/PID/stat counts 10 ms ticks (0.16 CPU-s/GiB of a 64 MiB read). A
// thread that exits drops out of the sum, but Go programs such as the
// mounts keep their threads. Without schedstat it is runner.CPUTime.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return runner.CPUTime(pid)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread has just exited
		}
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
		}
		run, _, _ := strings.Cut(string(b), " ") // nanoseconds on the CPU, first of three fields
		ns, err := strconv.ParseInt(run, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: parse %s: %w", pid, t, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
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

// worstOf returns the largest sample of any of the metrics.
func (r results) worstOf(keys []string) (v float64, ok bool) {
	for _, k := range keys {
		if w, ok2 := r.worst(k); ok2 && (!ok || w > v) {
			v, ok = w, true
		}
	}
	return v, ok
}

// worst returns the largest sample of a metric.
func (r results) worst(key string) (v float64, ok bool) {
	if len(r[key]) == 0 {
		return 0, false
	}
	return slices.Max(r[key]), true
}
