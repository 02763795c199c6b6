package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// Mount helper: mount(8) runs /sbin/mount.appliveryfs (a symlink to this
// binary), and mount.fuse3 runs `appliveryfs` for the fuse.appliveryfs
// type, both as
//
//	PROGRAM SOURCE MOUNTPOINT [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]
//
// with fstab's options after -o. The mount then goes to the background as
// --daemon does, so that mount(8) returns once it serves requests.

// helperOptions maps each mount option with a value to its flag.
var helperOptions = map[string]string{
	"uid": "--uid", "gid": "--gid", "token_file": "--token-file", "org": "--org",
	"cache_dir": "--cache-dir", "cache_size": "--cache-size", "disk_cache_size": "--disk-cache-size",
	"api_url": "--api-url", "download_url": "--download-url", "log_file": "--log-file",
}

// helperSwitches maps each mount option without a value to its flag.
var helperSwitches = map[string]string{
	"allow_other": "--allow-other", "allow_non_empty": "--allow-non-empty",
}

// helperIgnored are options that mean nothing to appliveryfs and are
// accepted as they are: for mount(8) and systemd (_netdev, nofail, noauto,
// user, users), and those mount(8) and mount.fuse3 add themselves. "rw" is
// among them because mount(8) passes it for every mount that does not say
// "ro": the mount is read-only whatever the options say.
var helperIgnored = []string{
	"ro", "rw", "_netdev", "nofail", "noauto", "auto", "user", "users", "nouser", "defaults",
	"dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime", "nodiratime",
}

// isMountHelper reports whether this process was started as a mount
// helper: by name, or with mount(8)'s SOURCE MOUNTPOINT arguments.
func isMountHelper(argv0 string, args []string) bool {
	if strings.HasPrefix(filepath.Base(argv0), "mount.") {
		return true
	}
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || !filepath.IsAbs(args[1]) {
		return false
	}
	return !slices.ContainsFunc(commands, func(c command) bool { return c.name == args[0] })
}

// mountArgs turns mount(8)'s arguments into those of `appliveryfs mount`.
// fake is set for -f: check everything, mount nothing.
func mountArgs(args []string) (out []string, fake bool, err error) {
	var pos, opts []string
	sloppy := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-t" || a == "-N":
			if i+1 == len(args) {
				return nil, false, usageErr("mount helper: %s needs a value", a)
			}
			i++
			switch a {
			case "-o":
				opts = append(opts, strings.Split(args[i], ",")...)
			case "-N":
				return nil, false, usageErr("mount helper: -N (another mount namespace) is not supported")
			}
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for _, c := range a[1:] {
				switch c {
				case 's':
					sloppy = true
				case 'f':
					fake = true
				case 'n', 'v':
				default:
					return nil, false, usageErr("mount helper: unknown flag -%c", c)
				}
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, false, usageErr("mount helper: want SOURCE MOUNTPOINT [-o OPTIONS], got %q", pos)
	}
	out = []string{"--daemon", "--fsname", pos[0]}
	for _, o := range opts {
		name, value, hasValue := strings.Cut(strings.TrimSpace(o), "=")
		switch {
		case name == "":
		case hasValue && helperOptions[name] != "":
			out = append(out, helperOptions[name]+"="+value)
		case !hasValue && helperSwitches[name] != "":
			out = append(out, helperSwitches[name])
		case slices.Contains(helperIgnored, name):
		case sloppy:
		default:
			return nil, false, usageErr("mount helper: unknown option %q", o)
		}
	}
	return append(out, pos[1]), fake, nil
}

// runMountHelper mounts as mount(8) asked.
func runMountHelper(args []string, stdout, stderr io.Writer) error {
	margs, fake, err := mountArgs(args)
	if err != nil {
		return err
	}
	if fake {
		fmt.Fprintf(stderr, "appliveryfs: would run: appliveryfs mount %s\n", strings.Join(margs, " "))
		return nil
	}
	c := &commands[slices.IndexFunc(commands, func(c command) bool { return c.name == "mount" })]
	return c.run(c.flagSet(stdout), margs, stdout, stderr)
}
