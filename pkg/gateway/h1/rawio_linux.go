//go:build linux && !race

package h1

import (
	"syscall"
	"unsafe"
)

// rawIO: reads and writes on a connection's non-blocking descriptor are made
// with syscall.RawSyscall, without the runtime's entersyscall/exitsyscall.
// They never block (EAGAIN instead), so the goroutine may keep its P through
// them; with a plain syscall, a loopback write of ~10 µs that spans a sysmon
// tick lets sysmon hand the P to another thread (a futex wake-up and two
// context switches), and sysmon itself keeps waking every 20 µs–10 ms to
// look. The race detector's builds use the plain calls (they record the
// happens-before edge of the I/O).
//
// The descriptors are sockets: recvfrom(2) and sendto(2), as nginx's recv
// and send, go to the socket layer directly, where read(2) and write(2) pass
// through the file layer first (perf showed vfs_read/vfs_write and the
// file-position lock at ~2 % of the gateway's CPU; the CPU per request moved
// less than this host's noise). MSG_NOSIGNAL: a write to a connection the
// peer reset fails with EPIPE without raising SIGPIPE (which the runtime
// would catch and ignore).
const rawIO = true

func readFD(fd uintptr, p []byte) (int, error) { return rawCall(syscall.SYS_RECVFROM, fd, p, 0) }

func writeFD(fd uintptr, p []byte) (int, error) {
	return rawCall(syscall.SYS_SENDTO, fd, p, syscall.MSG_NOSIGNAL)
}

// rawCall is recvfrom(2) or sendto(2) of p on the socket fd, with flags and
// no address.
func rawCall(trap, fd uintptr, p []byte, flags uintptr) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), flags, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
