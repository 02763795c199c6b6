// Command appliveryfs shows the app builds stored in Applivery as files.
//
// Each command lives in its own file: ls.go, mount.go, emulator.go (with
// demo); flags.go holds the flag types they share.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// command is one entry of the command table; the usage text is made from it.
type command struct {
	name     string
	synopsis string // after "appliveryfs "
	short    string
	// run parses args with fl, which prints the command's usage on --help.
	run func(fl *pflag.FlagSet, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"ls", "ls [ORG[/APP[/BUILD]]] [flags]", "list organizations, apps, builds or one build", runLs},
	{"get", "get ORG/APP/BUILD[/TYPE] [-o FILE|DIR|-] [flags]", "download one build file through the mount's cache, no FUSE needed", runGet},
	{"mount", "mount [flags] MOUNTPOINT", "mount every build the token can see", runMount},
	{"emulator", "emulator [flags]", "serve a local Applivery emulator with sample data", runEmulator},
	{"demo", "demo [flags] [MOUNTPOINT]", "run the emulator and mount it, to try things out", runDemo},
	{"cache", "cache du|prune --max-size SIZE|clear [flags]", "show the disk cache's usage, prune it or clear it", runCache},
	{"version", "version", "print the version", runVersion},
}

// usage is the text of `appliveryfs --help`.
func usage() string {
	var b strings.Builder
	b.WriteString("appliveryfs shows the app builds stored in Applivery as read-only files.\n\nUsage:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.synopsis))
	}
	for _, c := range commands {
		fmt.Fprintf(&b, "  appliveryfs %-*s  %s\n", width, c.synopsis, c.short)
	}
	fmt.Fprintf(&b, "  appliveryfs %-*s  %s\n", width, "SOURCE MOUNTPOINT -o OPTS", "as a mount helper: fstab, mount -t fuse.appliveryfs")
	b.WriteString("\nThe Service Account token comes from $APPLIVERY_TOKEN or --token-file FILE;\n")
	b.WriteString("$APPLIVERY_API_URL and $APPLIVERY_DOWNLOAD_URL set --api-url and --download-url.\n")
	b.WriteString("Run 'appliveryfs COMMAND --help' for the flags of a command.\n")
	return b.String()
}

// exitError carries an exit status; its message is printed as one line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	var err error
	if isMountHelper(os.Args[0], os.Args[1:]) {
		err = runMountHelper(os.Args[1:], os.Stdout, os.Stderr)
	} else {
		err = run(os.Args[1:], os.Stdout, os.Stderr)
	}
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "appliveryfs: %v\n", err)
		if code == 2 {
			fmt.Fprintln(os.Stderr, "Run 'appliveryfs --help' for usage.")
		}
	} else {
		code = 0
	}
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return usageErr("no command given")
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return nil
	case "--version":
		name = "version"
	}
	for i := range commands {
		if c := &commands[i]; c.name == name {
			return c.run(c.flagSet(stdout), rest, stdout, stderr)
		}
	}
	return usageErr("unknown command %q", name)
}

// flagSet returns an empty flag set for the command; --help prints its
// synopsis and flags to stdout, as asked for; errors go to stderr from main.
func (c *command) flagSet(stdout io.Writer) *pflag.FlagSet {
	fl := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fl.SetOutput(stdout)
	fl.Usage = func() {
		fmt.Fprintf(stdout, "Usage: appliveryfs %s\n\n%s\n\nFlags:\n%s", c.synopsis, c.short, fl.FlagUsages())
	}
	return fl
}

// parse parses args, turning every flag error into a usage error.
func parse(fl *pflag.FlagSet, args []string) error {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}
