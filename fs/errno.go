package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/appliveryfs/appliveryfs/api"
)

// errno maps an error to what the caller of a FUSE operation sees. It is
// the one place where errors become errnos.
func errno(ctx context.Context, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return syscall.EINTR
	case errors.Is(err, api.ErrUnauthorized), errors.Is(err, api.ErrForbidden):
		return syscall.EACCES
	case errors.Is(err, api.ErrNotProcessed):
		return syscall.EAGAIN
	case errors.Is(err, api.ErrNotFound):
		return syscall.ENOENT
	}
	return syscall.EIO
}

// errAttrs is the log group of an error: its text and, for an answer of
// Applivery, the HTTP status and Applivery code.
func errAttrs(err error) slog.Attr {
	attrs := []any{"msg", err.Error()}
	var ae *api.Error
	if errors.As(err, &ae) {
		attrs = append(attrs, "status", ae.StatusCode, "code", ae.Code)
	}
	return slog.Group("err", attrs...)
}

// fail maps err to an errno for a FUSE answer, and counts it.
func (f *FS) fail(ctx context.Context, err error) syscall.Errno {
	e := errno(ctx, err)
	f.stats.countErrno(e)
	return e
}
