//go:build linux

package runner

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCleanupOrder(t *testing.T) {
	var c Cleanup
	var got []int
	c.Add(func() { got = append(got, 1) })
	c.Add(func() { got = append(got, 2) })
	c.Run()
	c.Run()
	c.Add(func() { got = append(got, 3) }) // after Run: at once
	if want := []int{2, 1, 3}; !slices.Equal(got, want) {
		t.Errorf("ran %v, want %v", got, want)
	}
	if c.Interrupted() {
		t.Error("Interrupted without a signal")
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := Tail(path, 2), "  b\n  c"; got != want {
		t.Errorf("Tail = %q, want %q", got, want)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(empty, 2); got != "  (empty)" {
		t.Errorf("Tail of an empty log = %q", got)
	}
}

func TestProcStatus(t *testing.T) {
	rss, err := ProcStatus(os.Getpid(), "VmRSS")
	if err != nil || rss <= 0 {
		t.Errorf("ProcStatus(self, VmRSS) = %d, %v", rss, err)
	}
	if _, err := ProcStatus(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("ProcStatus of a missing field: no error")
	}
}

func TestMountsUnder(t *testing.T) {
	if got := MountsUnder("/"); !slices.Contains(got, "/") {
		t.Errorf("MountsUnder(/) = %v, want / among them", got)
	}
}
