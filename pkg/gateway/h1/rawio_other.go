//go:build !linux || race

package h1

import "syscall"

// rawIO is false: connections are read through net.Conn; writeFD (the
// server's non-blocking writes, Linux only in practice) is a plain call.
const rawIO = false

func readFD(fd uintptr, p []byte) (int, error) { return sysIO(syscall.Read, fd, p) }

func writeFD(fd uintptr, p []byte) (int, error) { return sysIO(syscall.Write, fd, p) }

// sysIO calls syscall.Read or Write, whose descriptor is an int on Unix and
// a Handle on Windows: the package builds everywhere.
func sysIO[FD ~int | ~uintptr](call func(FD, []byte) (int, error), fd uintptr, p []byte) (int, error) {
	return call(FD(fd), p)
}
