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
const rawIO = true

func readFD(fd uintptr, p []byte) (int, error) { return rawCall(syscall.SYS_READ, fd, p) }

func writeFD(fd uintptr, p []byte) (int, error) { return rawCall(syscall.SYS_WRITE, fd, p) }

// rawCall is read(2) or write(2) of p on fd.
func rawCall(trap, fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
