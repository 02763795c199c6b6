package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/appliveryfs/appliveryfs/api"
	"github.com/appliveryfs/appliveryfs/integration/emulator"
	"github.com/spf13/pflag"
)

func runEmulator(fl *pflag.FlagSet, args []string, stdout, stderr io.Writer) error {
	tokenTTL := fl.Duration("token-ttl", 5*time.Minute, "lifetime of a download token")
	urlTTL := fl.Duration("url-ttl", 15*time.Minute, "lifetime of a signed storage URL")
	latency := fl.Duration("latency", 0, "delay before the first byte of every answer")
	var bw byteSize
	fl.Var(&bw, "bandwidth", "per-connection storage bandwidth in bytes per second (e.g. 32M); 0 for unlimited")
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return usageErr("emulator takes no arguments")
	}
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	defer emu.Close()
	emu.SetTokenTTL(*tokenTTL)
	emu.SetURLTTL(*urlTTL)
	emu.SetLatency(*latency)
	emu.SetBandwidth(int64(bw))
	fmt.Fprintf(stdout, `Applivery emulator serving sample data on 127.0.0.1. Try:

  export APPLIVERY_TOKEN=%s
  appliveryfs ls --api-url %s --download-url %s
  appliveryfs ls acme/field-app --api-url %s --download-url %s
  appliveryfs mount --api-url %s --download-url %s MOUNTPOINT

Press Ctrl-C to stop.
`, emu.Token(), emu.APIURL(), emu.DownloadURL(), emu.APIURL(), emu.DownloadURL(), emu.APIURL(), emu.DownloadURL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func runDemo(fl *pflag.FlagSet, args []string, stdout, stderr io.Writer) error {
	mf := newMountFlags(fl)
	if err := parse(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		return usageErr("demo takes at most one MOUNTPOINT")
	}
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	defer emu.Close()
	if !fl.Changed("cache-dir") {
		tmp, err := os.MkdirTemp("", "appliveryfs-demo-cache-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		mf.cacheDir = tmp
	}
	mnt := fl.Arg(0)
	if mnt == "" {
		tmp, err := os.MkdirTemp("", "appliveryfs-demo-")
		if err != nil {
			return err
		}
		defer os.Remove(tmp)
		mnt = tmp
	}
	client, err := api.NewClient(api.Config{APIURL: emu.APIURL(), DownloadURL: emu.DownloadURL(), Token: emu.Token()})
	if err != nil {
		return err
	}
	if mnt, err = filepath.Abs(mnt); err != nil {
		return err
	}
	logger, err := mf.log.logger(stderr)
	if err != nil {
		return err
	}
	return serve(client, mnt, mf, logger, func(dir string) {
		fmt.Fprintf(stdout, `The Applivery emulator's sample data is mounted on %[1]s. In another shell, try:

  ls -l %[1]s/acme/field-app
  cat %[1]s/acme/field-app/latest/info.json
  cp %[1]s/acme/field-app/latest/file /tmp/field-app.apk
  unzip -l %[1]s/acme/field-ios/latest/file.ipa
  rsync -a %[1]s/acme/ /tmp/acme-builds/

Press Ctrl-C to unmount and stop.
`, dir)
	})
}
