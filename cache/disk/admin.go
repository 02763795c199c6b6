package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// clearPrefix names the directory a v1 tree is moved into by Clear before
// it is deleted.
const clearPrefix = ".clear-"

// DirStats is what a cache directory holds, as StatDir counts it.
type DirStats struct {
	DiskBytes  int64 // allocated to the directory and everything below it, as du(1) counts
	Blocks     int   // cached blocks
	BlockBytes int64 // their payload bytes, which size caps and Prune count
	Files      int   // build files with at least one cached block
}

// StatDir measures the cache directory dir. It only reads, so it is safe
// beside mounts that use dir: whatever they remove during the walk is
// skipped. Unlike Open it never creates dir.
func StatDir(dir string) (DirStats, error) {
	// The directory may be a symlink to the real one, as Open would follow.
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return DirStats{}, fmt.Errorf("measure %s: %w", dir, err)
	}
	blocksDir := filepath.Join(root, version, "blocks")
	var st DirStats
	files := make(map[Key]bool)
	seen := make(map[fileID]bool) // hard links, which du counts once
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		var info fs.FileInfo
		if err == nil {
			info, err = d.Info()
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != root {
				return nil // removed by a mount since its directory was read
			}
			return err
		}
		n, id, linked := allocated(info)
		if linked {
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		st.DiskBytes += n
		if key, size, ok := blockFile(blocksDir, path, info); ok {
			st.Blocks++
			st.BlockBytes += size
			files[key] = true
		}
		return nil
	})
	if err != nil {
		return DirStats{}, fmt.Errorf("measure %s: %w", dir, err)
	}
	st.Files = len(files)
	return st, nil
}

// blockFile reports whether path, found below the cache root, is a block
// file as scanBlocks would keep it, and returns its key and payload length.
func blockFile(blocksDir, path string, info fs.FileInfo) (Key, int64, bool) {
	typeDir := filepath.Dir(path)
	buildDir := filepath.Dir(typeDir)
	if filepath.Dir(buildDir) != blocksDir || !info.Mode().IsRegular() {
		return Key{}, 0, false
	}
	key := Key{Build: filepath.Base(buildDir), Type: filepath.Base(typeDir)}
	blockSize, _, ok := parseBlockName(info.Name())
	size := info.Size() - trailerLen
	if !ok || checkKey(key) != nil || size < 0 || size > blockSize {
		return Key{}, 0, false
	}
	return key, size, true
}

// Prune evicts least recently used blocks until the blocks stored in the
// directory total at most maxBytes, and returns how many block files it
// removed and their payload bytes. It rescans first, so the blocks of every
// process sharing the directory count, and it stops at maxBytes exactly,
// without the headroom that eviction on WriteBlock leaves.
//
// Other processes may read and write meanwhile. Prune removes only blocks it
// judged: a block written after its scan is not in the index, and one used
// or rewritten since (its mtime moved on) is no longer least recently used
// and is kept. A victim another process removed first counts as gone but
// not as removed by Prune.
func (c *Cache) Prune(maxBytes int64) (removed int, freed int64, err error) {
	if maxBytes < 0 {
		return 0, 0, fmt.Errorf("prune %s: negative size %d", c.dir, maxBytes)
	}
	if c.closed.Load() {
		return 0, 0, fmt.Errorf("prune %s: %w", c.dir, errClosed)
	}
	c.evictMu.Lock()
	defer c.evictMu.Unlock()
	if err := c.rescan(); err != nil {
		return 0, 0, fmt.Errorf("prune %s: %w", c.dir, err)
	}
	removed, freed, err = c.evictTo(maxBytes)
	// Remove the directories left empty, so that du sees their space back.
	_ = walk(c.blocksDir, time.Now(), nil)
	if err != nil {
		return removed, freed, fmt.Errorf("prune %s: %w", c.dir, err)
	}
	return removed, freed, nil
}

// evictTo removes least recently used blocks until usage is at most
// maxBytes. c.evictMu must be held.
func (c *Cache) evictTo(maxBytes int64) (removed int, freed int64, err error) {
	for {
		c.mu.Lock()
		el := c.lru.Back()
		if el == nil || c.usage <= maxBytes {
			c.mu.Unlock()
			return removed, freed, nil
		}
		e := el.Value.(*entry)
		id, size, touched, seq := e.id, e.size, e.touched, e.seq
		c.mu.Unlock()

		path := c.blockPath(id)
		info, err := os.Lstat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Evicted by another process.
		case err != nil:
			return removed, freed, err
		case info.ModTime().After(touched):
			c.used(e, info.ModTime())
			continue
		default:
			err := os.Remove(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, freed, err
			}
			if err == nil {
				removed++
				freed += size
			}
		}
		c.drop(e, seq)
	}
}

// used records that another process used or rewrote e's block at mtime,
// which makes it the most recently used.
func (c *Cache) used(e *entry, mtime time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index[e.id] == e {
		e.used, e.touched = mtime, mtime
		c.lru.MoveToFront(e.elem)
	}
}

// drop removes e from the index unless it was rewritten since seq, when the
// block on disk is a new one.
func (c *Cache) drop(e *entry, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index[e.id] == e && e.seq == seq {
		c.unlink(e)
	}
}

// Clear removes every cached block and metadata file under dir, leaving dir
// and whatever else is in it. It is safe while mounts use dir: the tree is
// first renamed out of their way in one step, so that they see every block
// missing at once (a miss: fetched again) and start a new tree with their
// next write, and only then deleted. A write in flight during the rename
// fails, which costs that mount a refetch later.
func Clear(dir string) error {
	tmp, err := os.MkdirTemp(dir, clearPrefix+"*")
	if err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	err = os.Rename(filepath.Join(dir, version), filepath.Join(tmp, version))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(tmp)
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	// A Clear that was interrupted left its renamed tree behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), clearPrefix) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}
