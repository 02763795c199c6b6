package disk

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// staleTemp is how old a temp file must be before a scan deletes it;
	// no live writer holds one anywhere near that long.
	staleTemp = time.Hour
	// defaultRescanEvery bounds how often a write rescans the block tree to
	// learn what other processes added or evicted.
	defaultRescanEvery = time.Minute
)

func (c *Cache) rescanDue() bool {
	return time.Since(time.Unix(0, c.lastScan.Load())) >= c.rescanEvery
}

// rescan brings the index in line with the block tree; on error the index
// is left as it was. c.evictMu must be held.
func (c *Cache) rescan() error {
	c.mu.Lock()
	before := c.seq
	c.mu.Unlock()
	now := time.Now()
	found, err := scanBlocks(c.blocksDir, now)
	c.lastScan.Store(now.UnixNano())
	if err != nil {
		return err
	}
	c.merge(found, before)
	return nil
}

// merge folds a scan into the index: blocks found are added or have their
// recency raised to their mtime, and indexed blocks not found are dropped
// unless they were written after the scan began (seq > before), since the
// scan may have passed their directory before they landed. The recency list
// is then rebuilt in order of last use.
func (c *Cache) merge(found []scanned, before uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[blockID]bool, len(found))
	for _, f := range found {
		seen[f.id] = true
		e := c.index[f.id]
		if e == nil {
			c.seq++
			e = &entry{id: f.id, used: f.mtime, touched: f.mtime, seq: c.seq}
			c.index[f.id] = e
		} else {
			c.usage -= e.size
			if f.mtime.After(e.used) {
				e.used = f.mtime // touched by another process
			}
			if f.mtime.After(e.touched) {
				e.touched = f.mtime
			}
		}
		e.size = f.size
		c.usage += f.size
	}
	for id, e := range c.index {
		if !seen[id] && e.seq <= before {
			delete(c.index, id)
			c.usage -= e.size
		}
	}
	entries := make([]*entry, 0, len(c.index))
	for _, e := range c.index {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *entry) int { return a.used.Compare(b.used) })
	c.lru.Init()
	for _, e := range entries {
		e.elem = c.lru.PushFront(e)
	}
}

// scanned is one block found by scanBlocks.
type scanned struct {
	id    blockID
	size  int64 // payload bytes
	mtime time.Time
}

// scanBlocks lists the blocks stored under root. Files whose length no
// intact block could have are removed on the way.
func scanBlocks(root string, now time.Time) ([]scanned, error) {
	var found []scanned
	err := walk(root, now, func(key Key, path string, info fs.FileInfo) {
		blockSize, idx, ok := parseBlockName(info.Name())
		if !ok || !info.Mode().IsRegular() {
			return // not ours; leave it alone
		}
		size := info.Size() - trailerLen
		if size < 0 || size > blockSize {
			_ = os.Remove(path)
			return
		}
		found = append(found, scanned{blockID{key, blockSize, idx}, size, info.ModTime()})
	})
	return found, err
}

// walk calls visit (if not nil) for each file of a <build>/<type>/ tree
// under root. On the way it removes temp files older than staleTemp, left by
// writers that crashed, and directories left empty by eviction, so that
// neither accumulates. Only an unreadable root is an error; anything below
// that cannot be read is skipped.
func walk(root string, now time.Time, visit func(key Key, path string, info fs.FileInfo)) error {
	builds, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, b := range builds {
		if !b.IsDir() || !validPart(b.Name(), maxBuildLen, true) {
			continue
		}
		buildDir := filepath.Join(root, b.Name())
		types, err := os.ReadDir(buildDir)
		if err != nil {
			continue
		}
		emptied := 0
		for _, t := range types {
			key := Key{Build: b.Name(), Type: t.Name()}
			if !t.IsDir() || checkKey(key) != nil {
				continue
			}
			typeDir := filepath.Join(buildDir, t.Name())
			files, err := os.ReadDir(typeDir)
			if err != nil {
				continue
			}
			if len(files) == 0 {
				// Fails harmlessly if a writer has just put a file in it.
				if os.Remove(typeDir) == nil {
					emptied++
				}
				continue
			}
			for _, f := range files {
				temp := strings.HasPrefix(f.Name(), tempPrefix)
				if !temp && visit == nil {
					continue
				}
				info, err := f.Info()
				if err != nil {
					continue // removed since ReadDir
				}
				path := filepath.Join(typeDir, f.Name())
				switch {
				case temp && now.Sub(info.ModTime()) > staleTemp:
					_ = os.Remove(path)
				case !temp:
					visit(key, path, info)
				}
			}
		}
		if emptied == len(types) {
			_ = os.Remove(buildDir)
		}
	}
	return nil
}
