package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// logFlags choose how a mount logs.
type logFlags struct {
	level  string
	format string
}

func newLogFlags(fl *pflag.FlagSet) *logFlags {
	l := &logFlags{}
	fl.StringVar(&l.level, "log-level", "info", "debug, info, warn or error: debug adds every mint, re-mint, retry and prefetch window")
	fl.StringVar(&l.format, "log-format", "text", "text or json (one object a line)")
	return l
}

// logger returns the logger the flags ask for, writing to w. No level
// ever logs a token or a signed URL: the code never hands them to it.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usageErr("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format %q: want text or json", l.format)
}
