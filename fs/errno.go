package fs

import (
	"context"
	"errors"
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
