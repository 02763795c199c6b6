package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// fileObject returns the sample's .aab build's universal apk as an Object
// with its true size, and its bytes.
func fileObject(t *testing.T, emu *emulator.Server, c *api.Client) (*api.Object, []byte) {
	t.Helper()
	b := sampleBuild(t, emu, "field-app", "2.4.0")
	data := emuObject(t, emu, b.ID, "file")
	return c.Object("acme", "field-app", b.ID, api.File, int64(len(data))), data
}

func TestObjectReadAt(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 20*time.Second)
	obj, data := fileObject(t, emu, c)
	size := int64(len(data))
	if obj.Size() != size || obj.TokensMinted() != 0 {
		t.Fatalf("fresh object: size %d, minted %d", obj.Size(), obj.TokensMinted())
	}
	if s, err := obj.Stat(ctx); err != nil || s != size || obj.TokensMinted() != 0 {
		t.Fatalf("Stat of a known size = %d, %v; minted %d (want no token)", s, err, obj.TokensMinted())
	}
	if obj.String() == "" {
		t.Error("empty String")
	}

	reads := []struct {
		off, n int64
	}{
		{0, 4096},
		{1, 1},
		{4095, 2},
		{123_457, 100_000},
		{size / 2, 65536 + 17},
		{size - 4096, 4096},
	}
	for _, r := range reads {
		buf := make([]byte, r.n)
		n, err := obj.ReadAt(ctx, buf, r.off)
		if err != nil || int64(n) != r.n {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(buf, data[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", r.off, r.n)
		}
	}
	// The whole object in one read.
	all := make([]byte, size)
	if n, err := obj.ReadAt(ctx, all, 0); err != nil || n != len(all) || !bytes.Equal(all, data) {
		t.Fatalf("whole read = %d, %v (equal %v)", n, err, bytes.Equal(all, data))
	}
	// Short read at the end (its error is checked in TestObjectShortReadAtEnd).
	buf := make([]byte, 4096)
	n, err := obj.ReadAt(ctx, buf, size-100)
	if n != 100 || (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], data[size-100:]) {
		t.Errorf("read over the end = %d, %v; want 100 bytes", n, err)
	}
	for _, off := range []int64{size, size + 5, 1 << 40} {
		if n, err := obj.ReadAt(ctx, buf, off); n != 0 || err != io.EOF {
			t.Errorf("ReadAt(%d) = %d, %v; want 0, io.EOF", off, n, err)
		}
	}
	if n, err := obj.ReadAt(ctx, nil, 10); n != 0 || err != nil {
		t.Errorf("empty read = %d, %v", n, err)
	}
	if _, err := obj.ReadAt(ctx, buf, -1); err == nil || err == io.EOF {
		t.Errorf("negative offset = %v", err)
	}
	if got := obj.TokensMinted(); got != 1 {
		t.Errorf("TokensMinted = %d, want 1 for reads within one URL's life", got)
	}
	if got := emu.Counters().TokensMinted; got != 1 {
		t.Errorf("emulator minted %d tokens", got)
	}
}

// ReadAt's contract (and io.ReaderAt's): fewer bytes than asked only at
// the end of the object, and then with io.EOF. Checked for an object whose
// size the API gave, one without range support, and one whose size Stat
// learnt, against an unsized object, which gets it right.
func TestObjectShortReadAtEnd(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := sampleBuild(t, emu, "desk", "1.8.0")
	data := emuObject(t, emu, b.ID, "file")
	size := int64(len(data))
	ios := sampleBuild(t, emu, "field-ios", "3.1.0")
	manifest := emuObject(t, emu, ios.ID, "auto")

	var bad []string
	check := func(name string, obj *api.Object, off int64, want []byte) {
		buf := make([]byte, 4096)
		n, err := obj.ReadAt(ctx, buf, off)
		if n != len(want) || !bytes.Equal(buf[:n], want) {
			t.Errorf("%s: ReadAt = %d bytes, %v; want %d bytes", name, n, err, len(want))
			return
		}
		if err != io.EOF {
			bad = append(bad, fmt.Sprintf("%s: (%d, %v)", name, n, err))
		}
	}
	check("unsized", c.Object("acme", "desk", b.ID, api.File, -1), size-100, data[size-100:])
	check("sized", c.Object("acme", "desk", b.ID, api.File, size), size-100, data[size-100:])
	stat := c.Object("acme", "field-ios", ios.ID, api.Auto, -1)
	if s, err := stat.Stat(ctx); err != nil || s != int64(len(manifest)) {
		t.Fatalf("Stat = %d, %v", s, err)
	}
	check("size learnt by Stat", stat, 0, manifest)
	emu.SetFaults(emulator.Faults{IgnoreRange: true})
	check("sized, no range support", c.Object("acme", "desk", b.ID, api.File, size), size-40, data[size-40:])
	if len(bad) > 0 {
		t.Fatalf("object.go ReadAtProgress (lines 108-113, 128) trims p to the known size and then compares done with the trimmed len(p), so a read crossing the end of an object of known size returns n < len(p) with a nil error instead of io.EOF, contrary to its doc (lines 93-94) and io.ReaderAt; got %s", strings.Join(bad, "; "))
	}
}

func TestObjectUnknownSizeEOF(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := sampleBuild(t, emu, "desk", "1.8.0")
	data := emuObject(t, emu, b.ID, "file")
	obj := c.Object("acme", "desk", b.ID, api.File, -7)
	if obj.Size() != -1 {
		t.Errorf("negative size stored as %d, want -1", obj.Size())
	}
	buf := make([]byte, 1000)
	n, err := obj.ReadAt(ctx, buf, int64(len(data))-10)
	if n != 10 || err != io.EOF || !bytes.Equal(buf[:10], data[len(data)-10:]) {
		t.Errorf("read over the end of an unsized object = %d, %v", n, err)
	}
	if obj.Size() != int64(len(data)) {
		t.Errorf("size learnt = %d, want %d", obj.Size(), len(data))
	}
	obj2 := c.Object("acme", "desk", b.ID, api.File, -1)
	if n, err := obj2.ReadAt(ctx, buf, int64(len(data))+10); n != 0 || err != io.EOF {
		t.Errorf("read past the end of an unsized object = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestObjectReadAtProgress(t *testing.T) {
	emu, c := startEmu(t)
	obj, data := fileObject(t, emu, c)
	buf := make([]byte, 300_000)
	var reports []int
	n, err := obj.ReadAtProgress(ctxTimeout(t, 10*time.Second), buf, 1000, func(done int) { reports = append(reports, done) })
	if err != nil || n != len(buf) || !bytes.Equal(buf, data[1000:1000+len(buf)]) {
		t.Fatalf("ReadAtProgress = %d, %v", n, err)
	}
	if len(reports) < 2 || reports[len(reports)-1] != len(buf) {
		t.Fatalf("progress reports %v", reports)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i] < reports[i-1] {
			t.Fatalf("progress went back: %v", reports)
		}
	}
}

func TestObjectRemintsAcrossURLExpiry(t *testing.T) {
	t.Parallel()
	emu, c := startEmu(t)
	emu.SetURLTTL(200 * time.Millisecond)
	obj, data := fileObject(t, emu, c)
	ctx := ctxTimeout(t, 20*time.Second)
	const reads = 8
	chunk := int64(len(data)) / reads
	got := make([]byte, 0, len(data))
	for i := 0; i < reads; i++ {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		off := int64(i) * chunk
		n := chunk
		if i == reads-1 {
			n = int64(len(data)) - off
		}
		buf := make([]byte, n)
		m, err := obj.ReadAt(ctx, buf, off)
		if err != nil || int64(m) != n {
			t.Fatalf("read %d at %d = %d, %v", i, off, m, err)
		}
		got = append(got, buf...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ across URL expiry")
	}
	if m := obj.TokensMinted(); m < 2 {
		t.Errorf("TokensMinted = %d, want > 1 (the URL expired between reads)", m)
	}
	if m := emu.Counters().TokensMinted; m != obj.TokensMinted() {
		t.Errorf("emulator minted %d, object says %d", m, obj.TokensMinted())
	}
}

func TestObjectRetriesStorage503(t *testing.T) {
	emu, c := startEmu(t)
	obj, data := fileObject(t, emu, c)
	emu.SetFaults(emulator.Faults{StorageStatus: 503, StorageCount: 3})
	buf := make([]byte, 100_000)
	n, err := obj.ReadAt(ctxTimeout(t, 15*time.Second), buf, 5000)
	if err != nil || n != len(buf) || !bytes.Equal(buf, data[5000:5000+len(buf)]) {
		t.Fatalf("ReadAt through 503s = %d, %v", n, err)
	}
	if f := emu.Faults(); f.StorageStatus != 0 {
		t.Errorf("faults left: %+v", f)
	}
	if r := emu.Counters().StorageRequests; r != 4 {
		t.Errorf("storage requests = %d, want 3 failed + 1", r)
	}
	if m := obj.TokensMinted(); m != 1 {
		t.Errorf("TokensMinted = %d: a 503 is no reason for a new URL", m)
	}
}

func TestObjectStorageHardError(t *testing.T) {
	emu, c := startEmu(t)
	obj, _ := fileObject(t, emu, c)
	emu.SetFaults(emulator.Faults{StorageStatus: 404})
	start := time.Now()
	_, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), make([]byte, 10), 0)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("storage 404 = %v, want ErrNotFound", err)
	}
	if strings.Contains(err.Error(), "sig=") || strings.Contains(err.Error(), "/o/") {
		t.Errorf("error leaks the signed URL: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a permanent storage error took %s", d)
	}
}

func TestObjectResumesCutConnections(t *testing.T) {
	emu, c := startEmu(t)
	obj, data := fileObject(t, emu, c)
	emu.SetFaults(emulator.Faults{CutAfter: 10000, CutCount: 3})
	buf := make([]byte, 200_000)
	const off = 12_345
	n, err := obj.ReadAt(ctxTimeout(t, 15*time.Second), buf, off)
	if err != nil || n != len(buf) {
		t.Fatalf("ReadAt through cuts = %d, %v", n, err)
	}
	if !bytes.Equal(buf, data[off:off+len(buf)]) {
		t.Fatal("bytes differ after resuming cut connections")
	}
	if f := emu.Faults(); f.CutAfter != 0 {
		t.Errorf("cuts left: %+v", f)
	}
	cnt := emu.Counters()
	if cnt.StorageRequests != 4 {
		t.Errorf("storage requests = %d, want 3 cut + 1", cnt.StorageRequests)
	}
	// Resuming means not fetching again what arrived: 3 cut bodies of
	// 10000 bytes plus the rest. The emulator counts a write once it
	// returns, which may be after the client has the bytes: wait for it.
	for deadline := time.Now().Add(2 * time.Second); cnt.StorageBytes < int64(len(buf)) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		cnt = emu.Counters()
	}
	if cnt.StorageBytes != int64(len(buf)) {
		t.Errorf("storage sent %d body bytes for a %d-byte read", cnt.StorageBytes, len(buf))
	}
	if obj.TokensMinted() != 1 {
		t.Errorf("TokensMinted = %d", obj.TokensMinted())
	}
}

func TestObjectIgnoreRange(t *testing.T) {
	emu, c := startEmu(t)
	obj, data := fileObject(t, emu, c)
	emu.SetFaults(emulator.Faults{IgnoreRange: true})
	ctx := ctxTimeout(t, 15*time.Second)
	size := int64(len(data))
	for _, r := range []struct{ off, n int64 }{{0, 1000}, {777_777, 50_000}, {size - 3000, 3000}, {1, size - 1}} {
		buf := make([]byte, r.n)
		n, err := obj.ReadAt(ctx, buf, r.off)
		if err != nil || int64(n) != r.n || !bytes.Equal(buf, data[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d) without range support = %d, %v", r.off, r.n, n, err)
		}
	}
	buf := make([]byte, 100)
	if n, err := obj.ReadAt(ctx, buf, size-40); n != 40 || (err != nil && err != io.EOF) || !bytes.Equal(buf[:40], data[size-40:]) {
		t.Errorf("short read at the end without range support = %d, %v", n, err)
	}
	// Unsized, the 200's Content-Length tells the size.
	b := sampleBuild(t, emu, "field-app", "2.4.0")
	obj2 := c.Object("acme", "field-app", b.ID, api.File, -1)
	if n, err := obj2.ReadAt(ctx, buf, 500_000); n != 100 || err != nil || !bytes.Equal(buf, data[500_000:500_100]) {
		t.Errorf("unsized read without range support = %d, %v", n, err)
	}
	if obj2.Size() != size {
		t.Errorf("size learnt from a 200 = %d, want %d", obj2.Size(), size)
	}
}

func TestObjectSizeMismatch(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 15*time.Second)
	b := sampleBuild(t, emu, "field-app", "2.4.0")
	data := emuObject(t, emu, b.ID, "file")
	for _, tc := range []struct {
		name        string
		size        int64
		ignoreRange bool
	}{
		{"larger", int64(len(data)) + 10, false},
		{"smaller", int64(len(data)) - 10, false},
		{"larger, no ranges", int64(len(data)) + 4096, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu.SetFaults(emulator.Faults{IgnoreRange: tc.ignoreRange})
			obj := c.Object("acme", "field-app", b.ID, api.File, tc.size)
			start := time.Now()
			n, err := obj.ReadAt(ctx, make([]byte, 4096), 0)
			if !errors.Is(err, api.ErrSizeMismatch) {
				t.Fatalf("ReadAt = %d, %v; want ErrSizeMismatch", n, err)
			}
			if n != 0 {
				t.Errorf("ReadAt returned %d bytes of a mismatched object", n)
			}
			if api.Temporary(err) {
				t.Error("size mismatch classified temporary")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s: a mismatch must not be retried", d)
			}
			if obj.TokensMinted() != 1 {
				t.Errorf("TokensMinted = %d", obj.TokensMinted())
			}
		})
	}
}

func TestObjectChangedBetweenURLs(t *testing.T) {
	t.Parallel()
	emu, c := startEmu(t)
	emu.SetURLTTL(100 * time.Millisecond)
	obj, data := fileObject(t, emu, c)
	ctx := ctxTimeout(t, 15*time.Second)
	buf := make([]byte, 8192)
	if n, err := obj.ReadAt(ctx, buf, 0); err != nil || n != len(buf) || !bytes.Equal(buf, data[:len(buf)]) {
		t.Fatalf("first read = %d, %v", n, err)
	}
	b := sampleBuild(t, emu, "field-app", "2.4.0")
	if err := emu.MutateObject(b.ID, "file"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1300 * time.Millisecond) // expiry has one-second resolution
	_, err := obj.ReadAt(ctx, buf, 8192)
	if !errors.Is(err, api.ErrObjectChanged) {
		t.Fatalf("read after the object changed = %v, want ErrObjectChanged", err)
	}
	if api.Temporary(err) {
		t.Error("ErrObjectChanged classified temporary")
	}
	if m := obj.TokensMinted(); m != 2 {
		t.Errorf("TokensMinted = %d, want 2 (the changed bytes came from a new URL)", m)
	}
}

func TestObjectDeadlineWhileAPIDown(t *testing.T) {
	t.Parallel()
	emu, c := startEmu(t)
	obj, _ := fileObject(t, emu, c)
	emu.SetFaults(emulator.Faults{APIDown: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	n, err := obj.ReadAt(ctx, make([]byte, 4096), 0)
	d := time.Since(start)
	if err == nil || n != 0 {
		t.Fatalf("ReadAt with the API down = %d, %v", n, err)
	}
	if err == io.EOF {
		t.Fatal("ReadAt with the API down reported io.EOF: the file would look truncated")
	}
	if d > 2*time.Second {
		t.Errorf("ReadAt took %s with a 1s deadline", d)
	}
	if strings.Contains(err.Error(), "/v1/") {
		t.Errorf("error leaks an API path: %v", err)
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("object.go withURL/giveUp: the error of a read that hit its deadline while the API was down wraps io.EOF (the transport's EOF on the dropped connection, via MintToken's %%w), so errors.Is(err, io.EOF) is true: %v", err)
	}
}

func TestObjectStatLearnsManifestSize(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := sampleBuild(t, emu, "field-ios", "3.1.0")
	want := emuObject(t, emu, b.ID, "auto")

	// What the filesystem does: the API gives the manifest no size.
	build, err := c.Build(ctx, "acme", "field-ios", b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var size int64 = -2
	for _, a := range build.Artifacts() {
		if a.Type == api.Auto {
			size = a.Size
		}
	}
	if size != -1 {
		t.Fatalf("manifest artifact size = %d, want -1", size)
	}
	obj := c.Object("acme", "field-ios", b.ID, api.Auto, size)
	if obj.Size() != -1 {
		t.Fatalf("Size before Stat = %d", obj.Size())
	}
	got, err := obj.Stat(ctx)
	if err != nil || got != int64(len(want)) {
		t.Fatalf("Stat = %d, %v; want %d", got, err, len(want))
	}
	if obj.Size() != int64(len(want)) {
		t.Errorf("Size after Stat = %d", obj.Size())
	}
	buf := make([]byte, len(want)+100)
	n, err := obj.ReadAt(ctx, buf, 0)
	if n != len(want) || (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want) {
		t.Errorf("reading the manifest = %d, %v", n, err)
	}
	if !strings.Contains(string(buf[:n]), "software-package") {
		t.Error("manifest content unexpected")
	}
	if m := obj.TokensMinted(); m != 1 {
		t.Errorf("TokensMinted = %d: Stat's URL should serve the reads after it", m)
	}
	if s, err := obj.Stat(ctx); err != nil || s != int64(len(want)) || obj.TokensMinted() != 1 {
		t.Errorf("second Stat = %d, %v (minted %d)", s, err, obj.TokensMinted())
	}
}

func TestObjectStatEmptyObject(t *testing.T) {
	emu, c := startEmu(t)
	ctx := ctxTimeout(t, 10*time.Second)
	b := &emulator.Build{
		Status: "processed", OS: "macos", BuildPlatform: "macos", VersionName: "0.0.1", VersionCode: "1",
		OriginalExtension: "pkg", CreatedAt: time.Now().Add(-time.Hour), PackageName: "com.acme.Empty",
		Objects: map[string]*emulator.Object{"file": {Name: "empty.pkg", Data: []byte{}}},
	}
	if err := emu.Data().AddBuild("acme", "desk", b); err != nil {
		t.Fatal(err)
	}
	obj := c.Object("acme", "desk", b.ID, api.File, -1)
	if s, err := obj.Stat(ctx); s != 0 || err != nil {
		t.Fatalf("Stat of an empty object = %d, %v", s, err)
	}
	if n, err := obj.ReadAt(ctx, make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Errorf("read of an empty object = %d, %v", n, err)
	}
}

func TestObjectConcurrentReadsMintOnce(t *testing.T) {
	emu, c := startEmu(t)
	obj, data := fileObject(t, emu, c)
	emu.SetLatency(100 * time.Millisecond) // keep the mint in flight while all readers arrive
	ctx := ctxTimeout(t, 20*time.Second)
	const readers = 8
	chunk := len(data) / readers
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, readers)
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			off := i * chunk
			buf := make([]byte, chunk)
			n, err := obj.ReadAt(ctx, buf, int64(off))
			if err == nil && (n != chunk || !bytes.Equal(buf, data[off:off+chunk])) {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("reader %d: %v", i, err)
		}
	}
	if m := obj.TokensMinted(); m != 1 {
		t.Errorf("TokensMinted = %d, want 1", m)
	}
	cnt := emu.Counters()
	if cnt.TokensMinted != 1 || cnt.Redirects != 1 {
		t.Errorf("emulator minted %d tokens, redirected %d times; want 1, 1", cnt.TokensMinted, cnt.Redirects)
	}
}

func TestObjectCancelled(t *testing.T) {
	emu, c := startEmu(t)
	obj, _ := fileObject(t, emu, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := obj.ReadAt(ctx, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := obj.Stat(ctx); err != nil {
		t.Errorf("Stat of a known size needs no request, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}

	// Mid-flight: the mint is slow, the reader gives up after 100ms.
	emu.SetLatency(2 * time.Second)
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err := obj.ReadAt(ctx, make([]byte, 10), 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt cancelled mid-flight = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled read returned after %s", d)
	}
}

func TestObjectCancelledDuringStorageRead(t *testing.T) {
	emu, c := startEmu(t)
	obj, _ := fileObject(t, emu, c)
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := obj.ReadAt(ctx, make([]byte, 10), 0); err != nil { // mint now
		t.Fatal(err)
	}
	emu.SetBandwidth(20_000) // 1 MB would take ~50s
	rctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	n, err := obj.ReadAt(rctx, make([]byte, 1<<20), 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt cancelled during the body = %d, %v; want context.Canceled", n, err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("cancelled read returned after %s", d)
	}
}

func TestObjectNotProcessed(t *testing.T) {
	emu, c := startEmu(t)
	b := sampleBuild(t, emu, "field-app", "2.5.0")
	obj := c.Object("acme", "field-app", b.ID, api.File, -1)
	start := time.Now()
	_, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), make([]byte, 10), 0)
	if !errors.Is(err, api.ErrNotProcessed) {
		t.Errorf("read of a pending build = %v, want ErrNotProcessed", err)
	}
	if _, err := obj.Stat(ctxTimeout(t, 10*time.Second)); !errors.Is(err, api.ErrNotProcessed) {
		t.Errorf("Stat of a pending build = %v, want ErrNotProcessed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s: not processed is not worth retrying", d)
	}
}

func TestObjectTokensAlwaysExpired(t *testing.T) {
	emu, c := startEmu(t)
	obj, _ := fileObject(t, emu, c)
	emu.SetTokenTTL(0)
	start := time.Now()
	_, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), make([]byte, 10), 0)
	if !errors.Is(err, api.ErrTokenExpired) {
		t.Errorf("read with every token expired = %v, want ErrTokenExpired", err)
	}
	if m := obj.TokensMinted(); m < 2 || m > 3 {
		t.Errorf("TokensMinted = %d, want a few retries, then failure", m)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestObjectMintThrottled(t *testing.T) {
	t.Parallel()
	emu, c := startEmu(t)
	obj, data := fileObject(t, emu, c)
	emu.SetFaults(emulator.Faults{APIStatus: 429, APIRetryAfter: time.Second, APICount: 1})
	start := time.Now()
	buf := make([]byte, 1000)
	n, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), buf, 0)
	if err != nil || n != len(buf) || !bytes.Equal(buf, data[:1000]) {
		t.Fatalf("read after a throttled mint = %d, %v", n, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("retried after %s, before the 1s Retry-After", d)
	}
}

// A storage URL that storage refuses as expired (403, 401, 410, or a 400
// saying so) is replaced by a fresh one.
func TestObjectExpiredURLStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
	}{
		{403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"},
		{401, ""},
		{410, ""},
		{400, "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>"},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			payload := []byte(strings.Repeat("abcdefghij", 50))
			var mu sync.Mutex
			refused := false
			storage := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				first := !refused && r.URL.Query().Get("n") == "1"
				refused = refused || first
				mu.Unlock()
				if first {
					w.WriteHeader(tc.status)
					io.WriteString(w, tc.body)
					return
				}
				http.ServeContent(w, r, "x", time.Unix(0, 0), bytes.NewReader(payload))
			}))
			var minted int
			download := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				minted++
				n := minted
				mu.Unlock()
				http.Redirect(w, r, storage.URL+"/o?n="+string(rune('0'+n)), http.StatusFound)
			}))
			apiHost := envelopeServer(t, 200, nil, `{"status":true,"data":{"token":"t","expiresAt":"2099-01-01T00:00:00Z"}}`)
			c := newClient(t, apiHost.URL, download.URL, "tok")
			obj := c.Object("o", "a", "b", api.File, int64(len(payload)))
			buf := make([]byte, 50)
			n, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), buf, 100)
			if err != nil || n != 50 || !bytes.Equal(buf, payload[100:150]) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if obj.TokensMinted() != 2 {
				t.Errorf("TokensMinted = %d, want 2", obj.TokensMinted())
			}
		})
	}
}

// TestObjectCappedRanges: a storage that answers fewer bytes than asked
// (with a correct Content-Range) is read to the end without errors.
func TestObjectCappedRanges(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes
	var mu sync.Mutex
	requests := 0
	storage := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		var a, b int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil {
			http.Error(w, "want a range", http.StatusBadRequest)
			return
		}
		b = min(b, a+999, len(payload)-1) // at most 1000 bytes an answer
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(payload)))
		w.Header().Set("Content-Length", fmt.Sprint(b-a+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(payload[a : b+1])
	}))
	download := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, storage.URL+"/o", http.StatusFound)
	}))
	apiHost := envelopeServer(t, 200, nil, `{"status":true,"data":{"token":"t","expiresAt":"2099-01-01T00:00:00Z"}}`)
	c := newClient(t, apiHost.URL, download.URL, "tok")
	obj := c.Object("o", "a", "b", api.File, int64(len(payload)))
	buf := make([]byte, 5000)
	start := time.Now()
	n, err := obj.ReadAt(ctxTimeout(t, 10*time.Second), buf, 12000)
	if n != 4000 || err != io.EOF || !bytes.Equal(buf[:n], payload[12000:]) {
		t.Fatalf("ReadAt past the end through capped ranges = %d, %v", n, err)
	}
	n, err = obj.ReadAt(ctxTimeout(t, 10*time.Second), buf, 1234)
	if n != 5000 || err != nil || !bytes.Equal(buf, payload[1234:6234]) {
		t.Fatalf("ReadAt through capped ranges = %d, %v", n, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("capped ranges took %v: treated as failures and backed off", d)
	}
}
