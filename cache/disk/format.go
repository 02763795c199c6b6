package disk

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Names in the tree; see the package comment for the layout. They are part
// of the format: changing one strands every cache directory already written.
const (
	version    = "v1"
	tempPrefix = ".tmp-"
	sizeName   = "size"
	verifyName = "verified"
)

// trailerLen is the size of the trailer: payload length (8 bytes), CRC-32C
// of the payload (4 bytes) and magic, all little endian.
const trailerLen = 16

var (
	magic      = [4]byte{'a', 'f', 'b', '1'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// blockName is the file name of a block within its file's directory.
func blockName(blockSize, idx int64) string {
	return strconv.FormatInt(blockSize, 10) + "-" + strconv.FormatInt(idx, 10)
}

// parseBlockName inverts blockName. Only the canonical spelling is
// accepted, so the path rebuilt from the result names the same file.
func parseBlockName(name string) (blockSize, idx int64, ok bool) {
	bs, ix, found := strings.Cut(name, "-")
	if !found {
		return 0, 0, false
	}
	blockSize, err1 := strconv.ParseInt(bs, 10, 64)
	idx, err2 := strconv.ParseInt(ix, 10, 64)
	if err1 != nil || err2 != nil || blockSize <= 0 || idx < 0 || blockName(blockSize, idx) != name {
		return 0, 0, false
	}
	return blockSize, idx, true
}

// trailer returns the trailer stored after payload.
func trailer(payload []byte) []byte {
	t := make([]byte, trailerLen)
	binary.LittleEndian.PutUint64(t[0:8], uint64(len(payload)))
	binary.LittleEndian.PutUint32(t[8:12], crc32.Checksum(payload, castagnoli))
	copy(t[12:], magic[:])
	return t
}

// trailerMatches checks a trailer (length, CRC-32C, magic) against its
// payload.
func trailerMatches(t, payload []byte) bool {
	return len(t) == trailerLen && [4]byte(t[12:16]) == magic &&
		binary.LittleEndian.Uint64(t[0:8]) == uint64(len(payload)) &&
		binary.LittleEndian.Uint32(t[8:12]) == crc32.Checksum(payload, castagnoli)
}

// intact reports whether buf is exactly n payload bytes followed by their
// trailer.
func intact(buf []byte, n int) bool {
	if n < 0 || len(buf) != n+trailerLen {
		return false
	}
	return trailerMatches(buf[n:], buf[:n])
}

// trailerOK reads the trailer that follows payload in r, checks that nothing
// follows it, and verifies payload against it. It lets a block be read
// straight into the caller's buffer rather than whole and then copied.
func trailerOK(r io.Reader, payload []byte) bool {
	var t [trailerLen]byte
	if _, err := io.ReadFull(r, t[:]); err != nil {
		return false
	}
	var extra [1]byte
	if n, _ := r.Read(extra[:]); n != 0 {
		return false // longer than asked: a block of another length
	}
	return trailerMatches(t[:], payload)
}

// writeFile atomically replaces path with payload and its trailer, through
// the page cache; see writeBlockFile.
func writeFile(path string, payload []byte) error {
	return replaceFile(path, 0, func(f *os.File) error {
		if _, err := f.Write(payload); err != nil {
			return err
		}
		_, err := f.Write(trailer(payload))
		return err
	})
}

// replaceFile atomically replaces path with what write writes into a new
// temp file beside it, opened with the extra open flags.
func replaceFile(path string, flags int, write func(*os.File) error) error {
	f, err := createTemp(filepath.Dir(path), flags)
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// readFile returns the verified payload of a file written by writeFile.
func readFile(path string) ([]byte, bool) {
	buf, err := os.ReadFile(path)
	if err != nil || !intact(buf, len(buf)-trailerLen) {
		return nil, false
	}
	return buf[:len(buf)-trailerLen], true
}
