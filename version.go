package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"
)

func runVersion(fl *pflag.FlagSet, args []string, stdout, _ io.Writer) error {
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return usageErr("version takes no arguments")
	}
	fmt.Fprintf(stdout, "appliveryfs %s\n", versionString())
	return nil
}

// versionString describes the running binary from what the go command
// stamped into it, e.g. "v0.3.1 (rev abcdef1, go1.26.8)". The revision is
// there only when the build stamped VCS information: the Makefile asks for
// it with -buildvcs=true, which beats a GOFLAGS=-buildvcs=false from the
// environment.
func versionString() string {
	info, _ := debug.ReadBuildInfo()
	return formatVersion(info)
}

// formatVersion formats info, which may be nil: "<module version> (rev
// <7 hex digits>[, modified], <go version>)", with "(devel)" for a module
// built without a version and "rev unknown" when no revision was stamped.
func formatVersion(info *debug.BuildInfo) string {
	mod, rev, modified, goVersion := "(devel)", "unknown", false, runtime.Version()
	if info != nil {
		if info.Main.Version != "" {
			mod = info.Main.Version
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && s.Value != "":
				rev = s.Value[:min(len(s.Value), 7)]
			case s.Key == "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (rev %s, %s)", mod, rev, goVersion)
}

// moduleVersion is the module version alone, for the User-Agent.
func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
