package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/appliveryfs/appliveryfs/api"
)

func runLs(fl *pflag.FlagSet, args []string, stdout, stderr io.Writer) error {
	conn := newConnFlags(fl)
	asJSON := fl.Bool("json", false, "print JSON instead of a table")
	timeout := fl.Duration("timeout", 60*time.Second, "give up after this long")
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		return usageErr("ls takes at most one ORG[/APP[/BUILD]] argument")
	}
	var parts []string
	if fl.NArg() == 1 {
		parts = strings.Split(strings.Trim(fl.Arg(0), "/"), "/")
		if len(parts) > 3 || slices.Contains(parts, "") {
			return usageErr("bad path %q: want ORG, ORG/APP or ORG/APP/BUILD", fl.Arg(0))
		}
	}
	client, err := conn.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var v any
	var table func(io.Writer)
	switch len(parts) {
	case 0:
		var orgs []api.Organization
		orgs, err = client.Organizations(ctx)
		v, table = orgs, rows("SLUG\tNAME\tID", orgs, func(o *api.Organization) []string {
			return []string{o.Slug, o.Name, o.ID}
		})
	case 1:
		var apps []api.App
		apps, err = client.Apps(ctx, parts[0])
		v, table = apps, rows("SLUG\tNAME\tPLATFORMS\tID", apps, func(a *api.App) []string {
			return []string{a.Slug, a.Name, strings.Join(a.BuildPlatforms, ","), a.ID}
		})
	case 2:
		var builds []api.Build
		builds, err = client.Builds(ctx, parts[0], parts[1])
		v, table = builds, rows("ID\tVERSION\tCODE\tPLATFORM\tSTATUS\tCREATED\tSIZE", builds, func(b *api.Build) []string {
			return []string{b.ID, orDash(b.VersionName), orDash(string(b.VersionCode)), orDash(platformOf(b)),
				b.Status, b.CreatedAt.UTC().Format("2006-01-02 15:04"), sizeOf(b)}
		})
	case 3:
		var b *api.Build
		b, err = client.Build(ctx, parts[0], parts[1], parts[2])
		v, table = b, func(w io.Writer) { buildTable(w, b) }
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

// rows returns a table printer: header, then one row per item.
func rows[T any](header string, items []T, row func(*T) []string) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintln(w, header)
		for i := range items {
			fmt.Fprintln(w, strings.Join(row(&items[i]), "\t"))
		}
	}
}

// buildTable prints one build, a fact a line.
func buildTable(w io.Writer, b *api.Build) {
	fmt.Fprintf(w, "ID\t%s\nSTATUS\t%s\nPLATFORM\t%s\nVERSION\t%s (%s)\nPACKAGE\t%s\nMIN OS\t%s\nCREATED\t%s\nSIZE\t%s\n",
		b.ID, b.Status, platformOf(b), orDash(b.VersionName), orDash(string(b.VersionCode)),
		orDash(b.Info.PackageName()), orDash(b.Info.MinOS()), b.CreatedAt.UTC().Format(time.RFC3339), sizeOf(b))
	for _, a := range b.Artifacts() {
		size := "unknown until read"
		if a.Size >= 0 {
			size = strconv.FormatInt(a.Size, 10)
		}
		fmt.Fprintf(w, "FILE\t%s.%s\t%s\n", a.Type, a.Ext, size)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func platformOf(b *api.Build) string {
	if b.BuildPlatform != "" {
		return b.BuildPlatform
	}
	return b.OS
}

func sizeOf(b *api.Build) string {
	for _, a := range b.Artifacts() {
		if a.Type == api.File && a.Size >= 0 {
			return humanBytes(a.Size)
		}
	}
	if b.Size.Valid {
		return humanBytes(b.Size.Value)
	}
	return "-"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
