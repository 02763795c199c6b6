package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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
	conn := newConnFlags(fl, stderr)
	asJSON := fl.Bool("json", false, "print JSON instead of a table")
	timeout := fl.Duration("timeout", 60*time.Second, "give up after this long")
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		return usageErr("ls takes at most one path")
	}
	var parts []string
	if fl.NArg() == 1 {
		parts = strings.Split(strings.Trim(fl.Arg(0), "/"), "/")
		if len(parts) > 5 || slices.Contains(parts, "") || (len(parts) > 3 && parts[2] != "versions" && parts[2] != "tags") ||
			(len(parts) == 5 && parts[2] != "tags") {
			return usageErr("bad path %q: want ORG, ORG/APP, ORG/APP/BUILD, ORG/APP/latest, "+
				"ORG/APP/versions[/NAME] or ORG/APP/tags[/TAG[/BUILD|latest]], as in the mounted tree", fl.Arg(0))
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
		v, table = builds, buildRows(builds)
	default:
		var b *api.Build
		if b, v, table, err = lsInApp(ctx, client, parts[0], parts[1], parts[2:]); err == nil && b != nil {
			b, err = client.Build(ctx, parts[0], parts[1], b.ID)
			v, table = b, func(w io.Writer) { buildTable(w, b) }
		}
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

// buildRows prints builds one a line.
func buildRows(builds []api.Build) func(io.Writer) {
	return rows("ID\tVERSION\tCODE\tTAGS\tPLATFORM\tSTATUS\tCREATED\tSIZE", builds, func(b *api.Build) []string {
		return []string{b.ID, orDash(b.VersionName), orDash(string(b.VersionCode)), orDash(strings.Join(b.Tags, ",")),
			orDash(platformOf(b)), b.Status, b.CreatedAt.UTC().Format("2006-01-02 15:04"), sizeOf(b)}
	})
}

// lsInApp resolves a path below an app the way the mounted tree does: a
// build id, latest, versions/NAME, tags/TAG/latest or tags/TAG/BUILD give
// one build; versions, tags and tags/TAG give what they list.
func lsInApp(ctx context.Context, client *api.Client, org, app string, rest []string) (*api.Build, any, func(io.Writer), error) {
	if len(rest) == 1 && api.IsBuildID(rest[0]) {
		return &api.Build{ID: rest[0]}, nil, nil, nil
	}
	builds, err := client.Builds(ctx, org, app)
	if err != nil {
		return nil, nil, nil, err
	}
	names := api.NameBuilds(builds)
	missing := fmt.Errorf("%s/%s/%s: %w", org, app, strings.Join(rest, "/"), api.ErrNotFound)
	switch {
	case rest[0] == "latest" && len(rest) == 1:
		if names.Latest == nil {
			return nil, nil, nil, missing
		}
		return names.Latest, nil, nil, nil
	case rest[0] == "versions" && len(rest) == 1:
		return nil, names.Versions, func(w io.Writer) {
			fmt.Fprintln(w, "VERSION\tBUILD")
			for _, name := range slices.Sorted(maps.Keys(names.Versions)) {
				fmt.Fprintf(w, "%s\t%s\n", name, names.Versions[name].ID)
			}
		}, nil
	case rest[0] == "versions":
		if b := names.Versions[rest[1]]; b != nil {
			return b, nil, nil, nil
		}
	case rest[0] == "tags" && len(rest) == 1:
		return nil, names.Tags, func(w io.Writer) {
			fmt.Fprintln(w, "TAG\tBUILDS\tLATEST")
			for _, tag := range slices.Sorted(maps.Keys(names.Tags)) {
				fmt.Fprintf(w, "%s\t%d\t%s\n", tag, len(names.Tags[tag]), names.Tags[tag][0].ID)
			}
		}, nil
	case rest[0] == "tags":
		tagged := names.Tags[rest[1]]
		if len(tagged) == 0 {
			break
		}
		if len(rest) == 2 {
			list := make([]api.Build, len(tagged))
			for i, b := range tagged {
				list[i] = *b
			}
			return nil, list, buildRows(list), nil
		}
		if rest[2] == "latest" {
			return tagged[0], nil, nil, nil
		}
		if i := slices.IndexFunc(tagged, func(b *api.Build) bool { return b.ID == rest[2] }); i >= 0 {
			return tagged[i], nil, nil, nil
		}
	}
	return nil, nil, nil, missing
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
