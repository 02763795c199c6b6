package main

import (
	"net"
	"os"
)

// notifySystemd sends state to the service manager when it asked for it
// ($NOTIFY_SOCKET, Type=notify): a datagram on a unix socket, which needs
// no library. Failing to reach it must not stop the mount.
func notifySystemd(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
