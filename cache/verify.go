package cache

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrChecksum means a whole file was read and its digest differs from the
// checksum the API gave. Its cached blocks have been dropped.
var ErrChecksum = errors.New("file content does not match its checksum")

// pageSize is the granularity at which a verifier tracks what readers were served.
const pageSize = 4096

// verifyState is where a file stands with its checksum.
type verifyState int

const (
	// unverified: bytes are being served and hashed; the verdict comes
	// once every page of the file has reached a reader.
	unverified verifyState = iota
	// verifying: the digest is being completed; readers wait for it.
	verifying
	// verified: the digest matched in this mount.
	verified
	// trustedFromDisk: a run before verified the blocks on disk, which
	// carry their own CRCs, and no block came from storage since.
	trustedFromDisk
	// failed: the digest did not match. Every read fails until the file is
	// opened afresh with no other reader open: the kernel retries a failed
	// page, and must not get bad bytes the second time.
	failed
)

// blockSource is what a verifier needs of the cache.
type blockSource interface {
	// peek returns a complete block held in memory, fetching nothing, with
	// a reference on its memory the caller unrefs.
	peek(idx int64) (*block, bool)
	// hold returns a block, cached, in flight or fetched now, with a hold
	// on its fill the caller releases and a reference on its memory the
	// caller unrefs.
	hold(ctx context.Context, idx int64) (*block, error)
}

// marks records verdicts in the persistent cache, so that a later mount
// trusts blocks read back from disk without hashing them again.
type marks interface {
	Verified(key FileKey, checksum string) bool
	SetVerified(key FileKey, checksum string) error
	ClearVerified(key FileKey) error
}

// verifier checks one file against the checksum the API gave: blocks are
// hashed in order as they are cached, and the verdict is given once every
// page of the file has been served to a reader, in whatever order.
type verifier struct {
	key       FileKey
	checksum  string // lower-case hex digest from the API
	size      int64
	nblocks   int64
	blocks    blockSource
	marks     marks // nil without a disk cache
	base      context.Context
	ioTimeout time.Duration
	ahead     int // blocks the digest may hold at once
	// verdict reports each verdict: counted, and a mismatch drops the
	// file's blocks.
	verdict func(ok bool)

	// epoch is bumped when the file's blocks are dropped: bytes fetched
	// or served before that count for nothing.
	epoch atomic.Uint64

	mu       sync.Mutex
	state    verifyState
	marked   bool      // the disk holds a verified mark for the file
	run      *checkRun // the completion under way while state is verifying
	covered  []uint64  // bitmap of pages served since the digest started
	ncovered int64

	// The digest has a lock of its own: hashing a block takes milliseconds
	// and must not hold up reads recording what they served.
	hashMu  sync.Mutex
	hash    hash.Hash
	next    int64       // next block to hash, in order
	pending atomic.Bool // a fill found hashMu taken: the holder must look again
}

// checkRun is one completion of the digest; readers wait for its verdict.
type checkRun struct {
	done chan struct{}
	err  error
}

// newDigest returns the hash matching a hex MD5, SHA-1 or SHA-256
// checksum, or nil when the checksum is none of these.
func newDigest(sum string) hash.Hash {
	if _, err := hex.DecodeString(sum); err != nil {
		return nil
	}
	switch len(sum) {
	case 32:
		return md5.New()
	case 40:
		return sha1.New()
	case 64:
		return sha256.New()
	}
	return nil
}

// normalChecksum is the form checksums are compared and stored in.
func normalChecksum(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (v *verifier) pages() int64 { return (v.size + pageSize - 1) / pageSize }

// start sets the initial state from the disk's mark.
func (v *verifier) start() {
	v.covered = make([]uint64, (v.pages()+63)/64)
	if v.marks != nil && v.marks.Verified(v.key, v.checksum) {
		v.state, v.marked = trustedFromDisk, true
	}
}

// current returns the state.
func (v *verifier) current() verifyState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

// unsettled reports whether the file's bytes still await their verdict, or
// failed it: the kernel should not keep its pages across opens.
func (v *verifier) unsettled() bool {
	s := v.current()
	return s == unverified || s == verifying || s == failed
}

// reopen gives a failed file a fresh attempt: its bad blocks are gone.
func (v *verifier) reopen() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == failed {
		v.state = unverified
	}
}

// err is the error every read returns while the file is failed.
func (v *verifier) err() error {
	if v.current() == failed {
		return fmt.Errorf("%s: %w", v.key, ErrChecksum)
	}
	return nil
}

// fromSource notes that a block is coming from storage, before its first
// byte can reach a reader: whatever an earlier check verified, these bytes
// have not been, so the file is checked again from the start the next time
// it is served whole, and the disk's mark, which would cover them in the
// next mount, goes.
func (v *verifier) fromSource() {
	v.mu.Lock()
	if v.state != verified && v.state != trustedFromDisk {
		v.mu.Unlock()
		return
	}
	v.state = unverified
	clear(v.covered)
	v.ncovered = 0
	clearMark := v.marked
	v.marked = false
	v.mu.Unlock()
	// No digest runs now (the state was settled), so hashMu is free but
	// for a fill hashing a block: waiting for it cannot deadlock.
	v.hashMu.Lock()
	v.hash.Reset()
	v.next = 0
	v.hashMu.Unlock()
	if clearMark {
		// Best effort: should the removal fail (a read-only disk), the next
		// mount trusts these blocks on their CRCs alone.
		_ = v.marks.ClearVerified(v.key)
	}
}

// hashing reports whether the digest is still wanted.
func (v *verifier) hashing() bool {
	s := v.current()
	return s == unverified || s == verifying
}

// served records that bytes [off, off+n) of the given epoch reached a
// reader, and reports whether every page of the file now has. While that
// is so and no verdict came (a fetch for it failed), every read asks again.
func (v *verifier) served(off int64, n int, epoch uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if (v.state != unverified && v.state != verifying) || n <= 0 || v.epoch.Load() != epoch {
		return false // settled, or served from blocks dropped since: they do not count
	}
	if v.ncovered == v.pages() {
		return true
	}
	for pg := off / pageSize; pg <= (off+int64(n)-1)/pageSize; pg++ {
		if w, bit := pg/64, uint64(1)<<(pg%64); v.covered[w]&bit == 0 {
			v.covered[w] |= bit
			v.ncovered++
		}
	}
	return v.ncovered == v.pages()
}

// blockCached hashes blocks in order as fills cache them: the next block
// the digest needs, then any later ones already cached, so that most of
// the hashing is done before a reader asks for the verdict. A fill never
// waits for another: if the digest is busy it leaves a note, and the busy
// one looks again before it leaves, so no block is skipped.
func (v *verifier) blockCached() {
	if !v.hashing() {
		return
	}
	for {
		v.pending.Store(true) // before TryLock: see the loop's end
		if !v.hashMu.TryLock() {
			return
		}
		v.pending.Store(false)
		for v.next < v.nblocks {
			b, ok := v.blocks.peek(v.next)
			if !ok {
				break
			}
			v.hash.Write(b.data)
			b.unref()
			v.next++
		}
		v.hashMu.Unlock()
		if !v.pending.Load() {
			return // nobody came by while we held it
		}
	}
}

// await waits for the verdict, starting the digest's completion if none is
// under way. The completion runs on its own, on the cache's deadlines
// rather than the reader's, so a reader giving up (ctx ends: an
// interrupt) does not fail the check for the others; it has no deadline
// of its own, since every fetch of the completion has one.
func (v *verifier) await(ctx context.Context) error {
	v.mu.Lock()
	switch v.state {
	case verified, trustedFromDisk:
		v.mu.Unlock()
		return nil
	case failed:
		v.mu.Unlock()
		return fmt.Errorf("%s: %w", v.key, ErrChecksum)
	case unverified:
		v.state = verifying
		v.run = &checkRun{done: make(chan struct{})}
		go v.complete(v.run)
	}
	run := v.run
	v.mu.Unlock()
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// complete finishes one run of the digest and records its outcome. The
// disk's mark is set under mu, so that a block arriving from storage
// meanwhile (fromSource) is sure to see it and clear it.
func (v *verifier) complete(run *checkRun) {
	sum, err := v.digest()
	v.mu.Lock()
	switch {
	case err != nil:
		v.state = unverified // the next complete read tries again
	case sum == v.checksum:
		v.state = verified
		v.marked = v.marks != nil && v.marks.SetVerified(v.key, v.checksum) == nil
	default:
		v.state = failed
		v.epoch.Add(1)
		clear(v.covered)
		v.ncovered = 0
		err = fmt.Errorf("%s: digest %s, API checksum %s: %w", v.key, sum, v.checksum, ErrChecksum)
	}
	v.run = nil
	v.mu.Unlock()
	if err == nil || errors.Is(err, ErrChecksum) {
		v.verdict(err == nil)
	}
	run.err = err
	close(run.done)
}

// digest hashes every block the fills did not, in order, fetching a few
// ahead, and returns the hex digest of the whole file. A mismatch starts
// the next digest from scratch.
func (v *verifier) digest() (string, error) {
	v.hashMu.Lock()
	defer func() {
		v.hashMu.Unlock()
		if v.pending.Load() {
			v.blockCached() // a fill finished while we held the digest
		}
	}()
	// The refetches of blocks evicted before they were hashed go in
	// parallel, within a share of the memory of their own, so that a file
	// larger than the budget is checked in the time of a read of it, not
	// of a block after block walk, and readers keep most of the budget.
	ahead := int64(v.ahead)
	held := map[int64]*block{}
	defer func() {
		for _, b := range held {
			b.release()
			b.unref()
		}
	}()
	for v.next < v.nblocks {
		for idx := v.next; idx < min(v.next+ahead, v.nblocks); idx++ {
			if held[idx] == nil {
				ctx, cancel := context.WithTimeout(v.base, v.ioTimeout)
				b, err := v.blocks.hold(ctx, idx)
				cancel()
				if err != nil {
					return "", err
				}
				held[idx] = b
			}
		}
		b := held[v.next]
		ctx, cancel := context.WithTimeout(v.base, v.ioTimeout)
		err := b.waitFor(ctx, len(b.data))
		cancel()
		if err != nil && errors.Is(err, context.Canceled) && v.base.Err() == nil {
			// Cancelled by a reader letting go just as we joined: fetch anew.
			b.release()
			b.unref()
			delete(held, v.next)
			continue
		}
		if err != nil {
			return "", err
		}
		v.hash.Write(b.data)
		b.release()
		b.unref()
		delete(held, v.next)
		v.next++
	}
	sum := hex.EncodeToString(v.hash.Sum(nil))
	if sum != v.checksum {
		v.hash.Reset()
		v.next = 0
	}
	return sum, nil
}
