//go:build linux

package main

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path"
	"time"

	"github.com/appliveryfs/appliveryfs/integration/emulator"
)

// The larger builds added to the sample data. Together with it they are
// half as big again as the mount's disk cache, so that blocks keep being
// evicted and fetched again all run long: a soak that settles into cache hits no
// longer meets storage, expiring URLs or faults.
var bigBuilds = []struct {
	size    int64
	entries int
}{
	{16 << 20, 300},
	{40 << 20, 800},
	{72 << 20, 1500},
}

// soakPackage tells the big builds from the sample ones.
const soakPackage = "com.example.soak"

// A file's kind decides how often readers pick it.
const (
	kindBig    = iota // one of bigBuilds
	kindSample        // a sample build of a few MB or less, or an OTA manifest
	kindTiny          // one of the 130 nightly builds of a few KB
	numKinds
)

// kindWeights: mostly the big builds, which carry the bytes and span
// expiries, and still many opens of small files, which mint the most
// tokens per byte.
var kindWeights = [numKinds]int{kindBig: 5, kindSample: 3, kindTiny: 2}

// target is a build file as the mount shows it, with the bytes it must
// read as.
type target struct {
	path string // relative to the mountpoint
	kind int
	data []byte
	sum  [sha256.Size]byte
}

// fixture is the emulator and the files the readers copy.
type fixture struct {
	emu   *emulator.Server
	files [numKinds][]*target
}

// startFixture serves the sample data plus bigBuilds on 127.0.0.1.
func startFixture(seed uint64) (*fixture, error) {
	ds := emulator.SampleData()
	for i, b := range bigBuilds {
		build := &emulator.Build{
			Status: "processed", OS: "ios", BuildPlatform: "ios",
			VersionName: fmt.Sprintf("9.%d.0", i), VersionCode: fmt.Sprint(900 + i), OriginalExtension: "ipa",
			CreatedAt: time.Now().UTC().Truncate(time.Second), Changelog: "soak build",
			PackageName: soakPackage, MinOS: "15.0",
			Objects: map[string]*emulator.Object{"file": {
				Name: fmt.Sprintf("Soak%d.ipa", i),
				Data: emulator.GenerateIPA(b.size, b.entries, int64(seed)+int64(i)),
			}},
		}
		if err := ds.AddBuild("acme", "field-ios", build); err != nil {
			return nil, err
		}
	}
	emu, err := emulator.Start(emulator.Options{Addr: "127.0.0.1", Data: ds})
	if err != nil {
		return nil, err
	}
	fx := &fixture{emu: emu}
	for _, f := range emu.TreeFiles() {
		kind := kindSample // an OTA manifest of a big build too
		switch {
		case f.Build.PackageName == soakPackage && f.Type == "file":
			kind = kindBig
		case f.App.Slug == "nightly":
			kind = kindTiny
		}
		fx.files[kind] = append(fx.files[kind], &target{
			path: path.Join(f.Org.Slug, f.App.Slug, f.Build.ID, f.Name),
			kind: kind, data: f.Data, sum: sha256.Sum256(f.Data),
		})
	}
	if len(fx.files[kindBig]) != len(bigBuilds) || len(fx.files[kindSample]) == 0 || len(fx.files[kindTiny]) == 0 {
		emu.Close()
		return nil, fmt.Errorf("fixture: found %d big, %d sample and %d tiny files", len(fx.files[kindBig]), len(fx.files[kindSample]), len(fx.files[kindTiny]))
	}
	return fx, nil
}

// pick chooses a file: a kind by kindWeights, then a file of it.
func (fx *fixture) pick(r *rand.Rand) *target {
	total := 0
	for _, w := range kindWeights {
		total += w
	}
	n := r.IntN(total)
	kind := 0
	for n >= kindWeights[kind] {
		n -= kindWeights[kind]
		kind++
	}
	files := fx.files[kind]
	return files[r.IntN(len(files))]
}

// totalBytes is the size of every distinct file the readers may copy.
func (fx *fixture) totalBytes() int64 {
	var n int64
	for _, files := range fx.files {
		for _, t := range files {
			n += int64(len(t.data))
		}
	}
	return n
}

func (fx *fixture) count() int {
	n := 0
	for _, files := range fx.files {
		n += len(files)
	}
	return n
}
