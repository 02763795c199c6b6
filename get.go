package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/cache"
)

// Exit statuses of get besides 0, 1 (failed) and 2 (usage). Scripts
// branch on them, so they are part of the interface: never renumber.
const (
	exitTokenRejected = 3
	exitNotFound      = 4
	exitNotProcessed  = 5 // worth retrying later
	exitInterrupted   = 130
)

const getHelp = `BUILD is a build id, latest, versions/NAME, versions/NAME+CODE, tags/TAG/latest
or tags/TAG/BUILD-ID, resolved as in the mounted tree. TYPE is file (the
default), auto or aab; the mount's file name (file.ipa) works too.

-o DIR, and no -o (the current directory), write DIR/TYPE.EXT, the name the
mount shows; -o FILE writes FILE; -o - writes to stdout. A file is written
under a temporary name beside it and renamed once complete and checked: a get
that fails or is interrupted leaves nothing under the final name, and running
it again reads what it already fetched from the disk cache. Bytes written to
stdout cannot be taken back: check the exit status.

A progress bar shows on stderr when it is a terminal, unless --quiet.

Exit status:
  0    done
  1    failed: network, storage, checksum mismatch, a build whose processing failed
  2    usage
  3    token rejected (HTTP 401 or 403)
  4    not found: organization, app, build, version, tag or file type
  5    build not processed yet (pending or in progress): try again later
  130  interrupted (SIGINT or SIGTERM); the partial file is removed
`

func runGet(fl *pflag.FlagSet, args []string, stdout, stderr io.Writer) error {
	conn := newConnFlags(fl, stderr)
	output := fl.StringP("output", "o", ".", "write to `FILE`, into an existing DIR under the mount's name, or to stdout (-)")
	quiet := fl.BoolP("quiet", "q", false, "show no progress bar")
	mf := engineFlags(fl)
	usage := fl.Usage
	fl.Usage = func() { usage(); fmt.Fprint(fl.Output(), "\n"+getHelp) }
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageErr("get takes one ORG/APP/BUILD[/TYPE]")
	}
	ref, err := parseGetPath(fl.Arg(0))
	if err != nil {
		return err
	}
	client, err := conn.client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &getter{client: client, mf: mf, stdout: stdout, stderr: stderr, quiet: *quiet}
	err = g.get(ctx, ref, *output)
	if err != nil && ctx.Err() != nil {
		return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted: %s", g.left)}
	}
	return getStatus(err)
}

// engineFlags registers mount's flags that shape the read path, taken from
// mount's own flag set: both commands read through the same engine, so the
// defaults and their meaning must not drift apart.
func engineFlags(fl *pflag.FlagSet) *mountFlags {
	all := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	mf := newMountFlags(all)
	for _, name := range []string{"cache-dir", "disk-cache-size", "cache-size", "block-size", "prefetch-blocks", "io-timeout"} {
		fl.AddFlag(all.Lookup(name))
	}
	fl.Lookup("io-timeout").Usage = "give up on a request that cannot complete in this time, retries included"
	return mf
}

// getRef is a parsed ORG/APP/BUILD[/TYPE].
type getRef struct {
	org, app string
	build    []string // a build id, latest, versions/NAME or tags/TAG/(latest|BUILD)
	typ      api.DownloadType
	ext      string // from a mount name such as file.ipa; "" for any
}

func (r getRef) String() string { return r.org + "/" + r.app + "/" + strings.Join(r.build, "/") }

// naming is r, and the id of the build it names unless r says it already.
func (r getRef) naming(id string) string {
	if len(r.build) == 1 && r.build[0] == id {
		return r.String()
	}
	return r.String() + " (build " + id + ")"
}

func parseGetPath(p string) (getRef, error) {
	bad := usageErr("bad path %q: want ORG/APP/BUILD[/TYPE], BUILD a build id, latest, versions/NAME "+
		"or tags/TAG/latest|BUILD, TYPE file, auto or aab", p)
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) < 3 || slices.Contains(parts, "") {
		return getRef{}, bad
	}
	// The first name after the app says how many names the build takes,
	// so that a version or tag called "file" is never read as a TYPE.
	n := 1
	switch parts[2] {
	case "versions":
		n = 2
	case "tags":
		n = 3
	}
	rest := parts[2:]
	if len(rest) < n || len(rest) > n+1 {
		return getRef{}, bad
	}
	r := getRef{org: parts[0], app: parts[1], build: rest[:n], typ: api.File}
	if len(rest) == n+1 {
		typ, ext, _ := strings.Cut(rest[n], ".")
		switch t := api.DownloadType(typ); t {
		case api.File, api.Auto, api.AAB:
			r.typ, r.ext = t, ext
		default:
			return getRef{}, bad
		}
	}
	return r, nil
}

// getStatus gives an error the exit status that get documents.
func getStatus(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	code := 1
	switch {
	case errors.Is(err, api.ErrUnauthorized), errors.Is(err, api.ErrForbidden):
		code = exitTokenRejected
	case errors.Is(err, api.ErrNotProcessed): // before not found: a 404 may carry code 5014
		code = exitNotProcessed
	case errors.Is(err, api.ErrNotFound):
		code = exitNotFound
	}
	return &exitError{code: code, err: err}
}

// getter downloads one build file.
type getter struct {
	client         *api.Client
	mf             *mountFlags
	stdout, stderr io.Writer
	quiet          bool
	left           string // what an interrupted get left behind, for its message
}

func (g *getter) get(ctx context.Context, ref getRef, output string) error {
	g.left = "nothing written"
	apiCtx, cancel := context.WithTimeout(ctx, g.mf.ioTimeout)
	defer cancel()
	b, art, err := resolveArtifact(apiCtx, g.client, ref)
	if err != nil {
		return err
	}
	dest, err := destination(output, art)
	if err != nil {
		return err
	}

	store, c, err := g.mf.openCaches(nil)
	if err != nil {
		return err
	}
	// Closed on every path: Close waits for the blocks queued for the
	// disk, which an interrupted get's rerun starts from.
	defer store.Close()
	defer c.Close()

	key := cache.FileKey{Build: b.ID, Type: string(art.Type)}
	size := art.Size
	if size < 0 {
		// An OTA manifest: the API gives no size. An earlier get or mount
		// may have learnt it, which saves a token.
		if s, ok := store.Size(key); ok {
			size = s
		}
	}
	obj := g.client.Object(ref.org, ref.app, b.ID, art.Type, size)
	if size < 0 {
		if size, err = obj.Stat(apiCtx); err != nil {
			return err
		}
		_ = store.SetSize(key, size) // failing costs one token next time, nothing else
	}
	rd := c.File(key, size, art.Checksum, obj).NewReader()
	defer rd.Close()

	bar := newProgressBar(g.stderr, g.quiet, string(art.Type)+"."+art.Ext, size)
	if dest == "-" {
		g.left = "output to stdout incomplete"
		err = copyOut(ctx, rd, size, g.stdout, bar)
	} else {
		err = g.writeFile(dest, func(w io.Writer) error { return copyOut(ctx, rd, size, w, bar) })
	}
	if err != nil && bar != nil && !bar.IsFinished() {
		bar.Exit() // ends the bar's line, so the error gets a line of its own
	}
	return err
}

// resolveArtifact finds the build a path names, the way ls and the
// mounted tree do, and the file of it that ref asks for.
func resolveArtifact(ctx context.Context, client *api.Client, ref getRef) (*api.Build, api.Artifact, error) {
	b, _, _, err := lsInApp(ctx, client, ref.org, ref.app, ref.build)
	if err == nil && b == nil {
		err = fmt.Errorf("%s names no single build: %w", ref, api.ErrNotFound)
	}
	if err != nil {
		return nil, api.Artifact{}, err
	}
	// The build's own answer: lsInApp does not look a build id up, and
	// the status must be known before a token is minted for it.
	if b, err = client.Build(ctx, ref.org, ref.app, b.ID); err != nil {
		return nil, api.Artifact{}, err
	}
	switch b.Status {
	case api.StatusProcessed:
	case api.StatusError:
		// Not ErrNotProcessed: scripts retry on that, and this never ends.
		return nil, api.Artifact{}, fmt.Errorf("%s: the build failed processing on Applivery and has no files", ref.naming(b.ID))
	default:
		return nil, api.Artifact{}, fmt.Errorf("%s: %w yet (status %s)", ref.naming(b.ID), api.ErrNotProcessed, b.Status)
	}
	for _, a := range b.Artifacts() {
		if a.Type == ref.typ && (ref.ext == "" || ref.ext == a.Ext) {
			return b, a, nil
		}
	}
	want := string(ref.typ)
	if ref.ext != "" {
		want += "." + ref.ext
	}
	return nil, api.Artifact{}, fmt.Errorf("%s: no file %s: %w", ref.naming(b.ID), want, api.ErrNotFound)
}

// destination is the path to write: output itself, or the file the mount
// would show inside output when it is a directory; "-" for stdout.
func destination(output string, art api.Artifact) (string, error) {
	if output == "-" {
		return output, nil
	}
	st, err := os.Stat(output)
	if err == nil && st.IsDir() {
		return filepath.Join(output, string(art.Type)+"."+art.Ext), nil
	}
	if strings.HasSuffix(output, string(filepath.Separator)) {
		return "", fmt.Errorf("-o %s: not a directory", output)
	}
	return output, nil
}

// writeFile has write fill a temporary file beside dest and renames it to
// dest once write succeeded: dest is never a partial file, and a file
// already there is replaced only by a complete one.
func (g *getter) writeFile(dest string, write func(io.Writer) error) error {
	f, err := createTemp(dest)
	if err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	err = write(f)
	if err == nil {
		// Before the rename: a crash must not leave dest naming lost bytes.
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", f.Name(), cerr)
	}
	if err == nil {
		if err = os.Rename(f.Name(), dest); err == nil {
			return nil
		}
	}
	if rerr := os.Remove(f.Name()); rerr != nil {
		g.left = "partial file " + f.Name() + " left behind"
		return fmt.Errorf("%w (and remove %s: %v)", err, f.Name(), rerr)
	}
	g.left = "nothing written to " + dest
	return err
}

// createTemp creates a hidden file beside dest. Unlike os.CreateTemp it
// leaves the mode to the umask, as cp would: a build is not a secret.
func createTemp(dest string) (*os.File, error) {
	dir, base := filepath.Split(dest)
	for try := 0; ; try++ {
		name := filepath.Join(dir, fmt.Sprintf(".%s.%08x.part", base, rand.Uint32()))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil || !errors.Is(err, os.ErrExist) || try == 100 {
			return f, err
		}
	}
}

// copyChunk is how much one read asks of the cache: large enough to keep
// calls few, small enough that the prefetch window grows from the start.
const copyChunk = 1 << 20

// copyOut reads the file from start to end into w. The cache's reader
// prefetches ahead of a sequential reader and checks the whole file's
// checksum on the read of its last bytes, so an error there means the
// file is wrong, and it is never reported done.
func copyOut(ctx context.Context, rd *cache.Reader, size int64, w io.Writer, bar *progressbar.ProgressBar) error {
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		n, err := rd.ReadAt(ctx, buf, off)
		if err == nil && n == 0 {
			err = io.ErrNoProgress
		}
		if err != nil {
			return fmt.Errorf("read at byte %d of %d: %w", off, size, err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off += int64(n)
		if bar != nil {
			bar.Add(n)
		}
	}
	return nil
}

// newProgressBar returns a bar of bytes, rate and time left on stderr
// when it is a terminal and not quiet, else nil: a pipe or a log file
// gets no control characters.
func newProgressBar(stderr io.Writer, quiet bool, name string, size int64) *progressbar.ProgressBar {
	f, ok := stderr.(*os.File)
	if quiet || !ok || size <= 0 || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true), // at once: the first bytes may take a while
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(f) }),
	)
}
