package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// v1Files is a cache directory as the v1 format lays it out, spelled out
// byte by byte rather than produced by this package, so that a change that
// would strand existing cache directories fails here.
var v1Files = map[string][]byte{
	"v1/blocks/0123456789abcdef01234567/file/4096-3": []byte("123456789" +
		"\x09\x00\x00\x00\x00\x00\x00\x00" + // payload length
		"\x83\x92\x06\xe3" + // CRC-32C, the standard check value of "123456789"
		"afb1"),
	"v1/meta/0123456789abcdef01234567/file/size": []byte("1234" +
		"\x04\x00\x00\x00\x00\x00\x00\x00" +
		"\xee\xf4\x3a\xf6" +
		"afb1"),
	"v1/meta/0123456789abcdef01234567/file/verified": []byte("sha1:abc" +
		"\x08\x00\x00\x00\x00\x00\x00\x00" +
		"\x23\x0f\xcd\x24" +
		"afb1"),
}

func TestReadsV1Files(t *testing.T) {
	dir := t.TempDir()
	for name, data := range v1Files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := testOpen(t, dir, 1<<20)
	if got := c.Usage(); got != 9 {
		t.Errorf("Usage = %d, want 9", got)
	}
	got, ok := read(c, testKey, 4096, 3, 9)
	if !ok || string(got) != "123456789" {
		t.Errorf("ReadBlock = %q, %v; want %q, true", got, ok, "123456789")
	}
	if size, ok := c.Size(testKey); !ok || size != 1234 {
		t.Errorf("Size = %d, %v; want 1234, true", size, ok)
	}
	if !c.Verified(testKey, "sha1:abc") {
		t.Error("Verified = false")
	}
}

func TestWritesV1Files(t *testing.T) {
	dir := t.TempDir()
	c := testOpen(t, dir, 1<<20)
	if err := c.WriteBlock(testKey, 4096, 3, []byte("123456789")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSize(testKey, 1234); err != nil {
		t.Fatal(err)
	}
	if err := c.SetVerified(testKey, "sha1:abc"); err != nil {
		t.Fatal(err)
	}
	for name, want := range v1Files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Error(err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestParseBlockName(t *testing.T) {
	for _, tc := range []struct {
		name           string
		blockSize, idx int64
		ok             bool
	}{
		{"4194304-0", 4194304, 0, true},
		{"1-9223372036854775807", 1, 9223372036854775807, true},
		{"4096", 0, 0, false},
		{"0-1", 0, 0, false},
		{"-1-1", 0, 0, false},
		{"4096--1", 0, 0, false},
		{"04096-1", 0, 0, false}, // not canonical: would rebuild another path
		{"4096-01", 0, 0, false},
		{"+4096-1", 0, 0, false},
		{"4096-1-2", 0, 0, false},
		{"4096-1.tmp", 0, 0, false},
		{tempPrefix + "123", 0, 0, false},
	} {
		bs, idx, ok := parseBlockName(tc.name)
		if bs != tc.blockSize || idx != tc.idx || ok != tc.ok {
			t.Errorf("parseBlockName(%q) = %d, %d, %v; want %d, %d, %v", tc.name, bs, idx, ok, tc.blockSize, tc.idx, tc.ok)
		}
	}
}
