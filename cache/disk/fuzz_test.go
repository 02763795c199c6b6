package disk

// Fuzz tests of the block file format: whatever bytes a block or meta file
// holds (torn by a crash, corrupted, written by another version), the cache
// serves exactly the payload of an intact file of the asked length, or
// nothing. `go test` runs the seeds and the corpus under testdata/fuzz;
// `make fuzz` explores further.

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/iotest"
)

// framed is payload followed by its trailer: an intact file.
func framed(payload string) []byte { return append([]byte(payload), trailer([]byte(payload))...) }

// FuzzTrailer checks the framing in memory, where the fuzzer is fast: a
// buffer is an intact n-byte block exactly when it is n bytes followed by
// their trailer, and the streaming check ReadBlock uses (payload read into
// the caller's buffer, then trailerOK on the rest of the file) agrees with
// it however the reader splits its reads.
func FuzzTrailer(f *testing.F) {
	f.Add(framed("123456789"), uint16(9))
	f.Add(framed("123456789"), uint16(8))
	f.Add(framed(""), uint16(0))
	f.Add(append(framed("1234"), 0), uint16(4))
	f.Add(append(framed("1234"), framed("5678")...), uint16(24))
	f.Add([]byte("123456789\x09\x00\x00\x00\x00\x00\x00\x00\x83\x92\x06\xe3afb0"), uint16(9))
	f.Add([]byte("afb1"), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, asked uint16) {
		n := int(asked)
		want := len(data) == n+trailerLen && bytes.Equal(data[n:], trailer(data[:n]))
		if got := intact(data, n); got != want {
			t.Fatalf("intact(%q, %d) = %v, want %v", data, n, got, want)
		}
		if n <= len(data) {
			for _, r := range []io.Reader{bytes.NewReader(data[n:]), iotest.OneByteReader(bytes.NewReader(data[n:]))} {
				if got := trailerOK(r, data[:n]); got != want {
					t.Fatalf("trailerOK after %d of %q = %v, want %v", n, data, got, want)
				}
			}
		}
		tr := trailer(data)
		if len(tr) != trailerLen || !trailerMatches(tr, data) || !intact(append(bytes.Clone(data), tr...), len(data)) {
			t.Fatalf("trailer(%q) = %q does not frame it", data, tr)
		}
		if len(data) > 0 && trailerMatches(tr, data[1:]) {
			t.Fatalf("the trailer of %q also matches %q", data, data[1:])
		}
	})
}

// FuzzBlockFile puts arbitrary bytes where a block file (and the size and
// verified files) of testKey belong, before or after Open, and reads them.
// A read hits only for an intact file whose payload is exactly the asked
// length, and then returns that payload. A missed file is removed unless
// it is an intact block of another length that fits the block size (the
// caller asked the wrong question), or the read was refused before the file
// was looked at.
func FuzzBlockFile(f *testing.F) {
	long := bytes.Repeat([]byte("0123456789abcdef"), 300)
	for _, s := range []struct {
		data       []byte
		asked      uint16
		blockSize  uint32
		beforeOpen bool
	}{
		{framed("123456789"), 9, 4096, false},
		{framed("123456789"), 9, 4096, true},
		{framed("123456789"), 9, 9, false},
		{framed("123456789"), 9, 8, true},  // longer than its block: swept by the scan
		{framed("123456789"), 9, 8, false}, // longer than its block: refused unread
		{framed("123456789"), 8, 4096, false},
		{framed("123456789"), 10, 4096, true},
		{framed(""), 0, 1, false},
		{framed(""), 0, 0, false}, // block size 0: no such block
		{framed(string(long)), uint16(len(long)), 1 << 16, false},
		{framed("123456789")[:20], 4, 4096, false}, // torn
		{append(framed("123456789"), 0), 9, 4096, false},
		{append([]byte("x"), framed("123456789")...), 9, 4096, false},
		{append(framed("1234"), framed("5678")...), 24, 4096, false},                              // a trailer inside the payload
		{[]byte("123456789\x09\x00\x00\x00\x00\x00\x00\x00\x83\x92\x06\xe3afb0"), 9, 4096, false}, // wrong magic
		{[]byte("123456789\x09\x00\x00\x00\x00\x00\x00\x00\x83\x92\x06\xe4afb1"), 9, 4096, false}, // wrong CRC
		{[]byte("123456789\x08\x00\x00\x00\x00\x00\x00\x00\x83\x92\x06\xe3afb1"), 9, 4096, false}, // wrong length
		{[]byte("123456789\x09\x00\x00\x00\x00\x00\x00\x01\x83\x92\x06\xe3afb1"), 9, 4096, true},
		{[]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00afb1"), 0, 4096, false},
		{framed("1234"), 4, 4096, true}, // also a valid size file
		{framed("-1"), 2, 4096, false},
		{[]byte{}, 0, 4096, false},
		{[]byte("afb1"), 0, 4096, true},
	} {
		f.Add(s.data, s.asked, s.blockSize, s.beforeOpen)
	}
	f.Fuzz(func(t *testing.T, data []byte, asked uint16, blockSize uint32, beforeOpen bool) {
		const idx = 3
		bs, n := int64(blockSize), int(asked)
		dir := t.TempDir()
		path := filepath.Join(dir, version, "blocks", testKey.Build, testKey.Type, blockName(bs, idx))
		sizePath := filepath.Join(dir, version, "meta", testKey.Build, testKey.Type, sizeName)
		verifyPath := filepath.Join(dir, version, "meta", testKey.Build, testKey.Type, verifyName)
		put := func() {
			for _, p := range []string{path, sizePath, verifyPath} {
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		if beforeOpen {
			put()
		}
		c, err := Open(dir, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !beforeOpen {
			put()
		}

		m := len(data) - trailerLen // the payload length an intact file has
		isIntact := m >= 0 && intact(data, m)
		sweptByScan := beforeOpen && bs > 0 && (m < 0 || int64(m) > bs)
		wantHit := !sweptByScan && bs > 0 && int64(n) <= bs && isIntact && n == m

		dst := bytes.Repeat([]byte{0xa5}, n)
		hit := c.ReadBlock(testKey, bs, idx, dst)
		if hit != wantHit {
			t.Fatalf("ReadBlock(%d bytes, block size %d) of a %d-byte file (intact %v) hit %v, want %v",
				n, bs, len(data), isIntact, hit, wantHit)
		}
		if hit && !bytes.Equal(dst, data[:n]) {
			t.Fatalf("ReadBlock returned %q, the file holds %q", dst, data[:n])
		}
		var wantKept bool
		switch {
		case sweptByScan:
			wantKept = false
		case bs <= 0 || int64(n) > bs:
			wantKept = true // refused before the file was opened
		case hit:
			wantKept = true
		default:
			wantKept = isIntact && int64(m) <= bs
		}
		if kept := fileExists(t, path); kept != wantKept {
			t.Fatalf("after the read the block file exists %v, want %v (hit %v, intact %v, %d of %d asked, block size %d)",
				kept, wantKept, hit, isIntact, m, n, bs)
		}
		if again := c.ReadBlock(testKey, bs, idx, make([]byte, n)); again != hit {
			t.Fatalf("a second ReadBlock hit %v, the first %v", again, hit)
		}
		if u := c.Usage(); u < 0 || (hit && u != int64(n)) {
			t.Fatalf("Usage = %d after a read of %d bytes that hit %v", u, n, hit)
		}

		// The meta files use the same framing.
		payload, ok := readFile(sizePath)
		if ok != isIntact || (ok && !bytes.Equal(payload, data[:m])) {
			t.Fatalf("readFile = %q, %v; the file is intact %v", payload, ok, isIntact)
		}
		size, ok := c.Size(testKey)
		want, err := strconv.ParseInt(string(data[:max(m, 0)]), 10, 64)
		if wantOK := isIntact && err == nil && want >= 0; ok != wantOK || (ok && size != want) {
			t.Fatalf("Size = %d, %v from %q; want %d, %v", size, ok, data, want, wantOK)
		}
		if isIntact && m > 0 && !c.Verified(testKey, string(data[:m])) {
			t.Fatalf("Verified(%q) = false for an intact mark", data[:m])
		}
		if c.Verified(testKey, string(data)) {
			t.Fatalf("Verified accepted the whole file %q as its checksum", data)
		}
	})
}

// FuzzBlockRoundTrip writes a payload with WriteBlock, reads it back, and
// then flips bits of one byte of the file: CRC-32C catches any error within
// 32 bits, and the length and magic are checked too, so a flipped byte is
// always a miss, and the corrupt file is removed.
func FuzzBlockRoundTrip(f *testing.F) {
	for _, s := range []struct {
		payload []byte
		slack   uint16
		idx     uint32
		pos     uint32
		mask    byte
	}{
		{[]byte("123456789"), 4087, 3, 0, 1},
		{[]byte("123456789"), 0, 0, 9, 0x80},  // length
		{[]byte("123456789"), 1, 1, 17, 0xff}, // CRC
		{[]byte("123456789"), 2, 2, 24, 0x01}, // magic
		{[]byte("123456789"), 3, 7, 8, 0x00},  // no flip
		{nil, 0, 0, 0, 0x10},                  // an empty block: its trailer only
		{nil, 100, 9, 15, 0x20},               // magic of an empty block
		{bytes.Repeat([]byte{0}, 1000), 0, 42, 500, 0x04},
		{bytes.Repeat([]byte{0xff}, 4096), 0, 1 << 31, 4100, 0xaa},
	} {
		f.Add(s.payload, s.slack, s.idx, s.pos, s.mask)
	}
	f.Fuzz(func(t *testing.T, payload []byte, slack uint16, idx32 uint32, pos uint32, mask byte) {
		if len(payload) > 1<<20 {
			payload = payload[:1<<20]
		}
		n := len(payload)
		bs, idx := int64(n)+int64(slack), int64(idx32)
		if bs == 0 {
			bs = 1
		}
		c, err := Open(t.TempDir(), 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteBlock(testKey, bs, idx, payload); err != nil {
			t.Fatalf("WriteBlock(%d bytes, block size %d, index %d): %v", n, bs, idx, err)
		}
		path := c.blockPath(blockID{testKey, bs, idx})
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, framed(string(payload))) || !intact(raw, n) {
			t.Fatalf("WriteBlock wrote %q for %q", raw, payload)
		}
		got, ok := read(c, testKey, bs, idx, n)
		if !ok || !bytes.Equal(got, payload) {
			t.Fatalf("ReadBlock = %q, %v; want %q", got, ok, payload)
		}
		// Another length misses, and keeps the file: it is intact.
		for _, other := range []int{n - 1, n + 1} {
			if other >= 0 && int64(other) <= bs {
				if _, ok := read(c, testKey, bs, idx, other); ok {
					t.Fatalf("ReadBlock of %d bytes hit a %d-byte block", other, n)
				}
			}
		}
		if _, ok := read(c, testKey, bs, idx, n); !ok {
			t.Fatal("a read of the wrong length lost an intact block")
		}
		// The name the block was stored under reads back as its block.
		if gotBS, gotIdx, ok := parseBlockName(filepath.Base(path)); !ok || gotBS != bs || gotIdx != idx {
			t.Fatalf("parseBlockName(%q) = %d, %d, %v", filepath.Base(path), gotBS, gotIdx, ok)
		}

		if mask == 0 {
			return
		}
		p := int(pos % uint32(len(raw)))
		raw[p] ^= mask
		if intact(raw, n) {
			t.Fatalf("flipping %#x at %d of %d bytes went unnoticed", mask, p, len(raw))
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, ok := read(c, testKey, bs, idx, n); ok {
			t.Fatalf("ReadBlock served %q from a file with byte %d flipped", got, p)
		}
		if fileExists(t, path) {
			t.Fatal("a corrupt block file was kept")
		}
		if c.Usage() != 0 {
			t.Fatalf("Usage = %d after the only block was dropped", c.Usage())
		}
	})
}

// FuzzParseBlockName checks that parseBlockName accepts exactly the names
// blockName makes, so that a name found on disk rebuilds its own path.
func FuzzParseBlockName(f *testing.F) {
	for _, s := range []string{
		"4194304-0", "1-9223372036854775807", "4096", "0-1", "-1-1", "4096--1", "04096-1", "4096-01",
		"+4096-1", "4096-+1", "4096-1-2", "4096-1.tmp", tempPrefix + "123", sizeName, verifyName, "", "-",
		"9223372036854775807-0", "9223372036854775808-0", "4096-1\x00", " 4096-1", "٤-1",
	} {
		f.Add(s, int64(4096), int64(3))
	}
	f.Add("", int64(1), int64(0))
	f.Add("", int64(9223372036854775807), int64(9223372036854775807))
	f.Add("", int64(0), int64(0))
	f.Add("", int64(-1), int64(-1))
	f.Fuzz(func(t *testing.T, name string, blockSize, idx int64) {
		if bs, ix, ok := parseBlockName(name); ok {
			if bs <= 0 || ix < 0 || blockName(bs, ix) != name {
				t.Fatalf("parseBlockName(%q) = %d, %d: not the block it names", name, bs, ix)
			}
		} else if bs != 0 || ix != 0 {
			t.Fatalf("parseBlockName(%q) rejected it but gave %d, %d", name, bs, ix)
		}
		name = blockName(blockSize, idx)
		bs, ix, ok := parseBlockName(name)
		if valid := blockSize > 0 && idx >= 0; ok != valid || (ok && (bs != blockSize || ix != idx)) {
			t.Fatalf("parseBlockName(blockName(%d, %d) = %q) = %d, %d, %v", blockSize, idx, name, bs, ix, ok)
		}
	})
}

func fileExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}
