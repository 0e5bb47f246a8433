package h1

import (
	"io"
	"net"
	"os"
	"syscall"
)

// fdConn reads and writes a connection through its RawConn with readFD and
// writeFD (raw system calls on Linux, see rawIO): the same waits, deadlines
// and close handling as net.Conn's Read and Write (the RawConn's), without
// the runtime's system-call bookkeeping. One per connection; not safe for
// concurrent reads (or concurrent writes), like a bufio.Reader on top.
type fdConn struct {
	raw             syscall.RawConn
	readFn, writeFn func(uintptr) bool // the callbacks, made once per connection
	rp, wp          []byte
	rn              int
	rerr, werr      error
}

// connReader is what reads nc: an fdConn where raw I/O applies, else nc.
func connReader(nc net.Conn, raw syscall.RawConn) io.Reader {
	if fc := newFDConn(raw); fc != nil {
		return fc
	}
	return nc
}

// newFDConn is nil when raw I/O does not apply (other systems, race builds,
// connections without a descriptor).
func newFDConn(raw syscall.RawConn) *fdConn {
	if !rawIO || raw == nil {
		return nil
	}
	c := &fdConn{raw: raw}
	c.readFn, c.writeFn = c.read, c.write
	return c
}

func (c *fdConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rp = p
	err := c.raw.Read(c.readFn) // deadline or closed: its error
	n, rerr := c.rn, c.rerr
	c.rp, c.rn, c.rerr = nil, 0, nil
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *fdConn) read(fd uintptr) bool {
	for {
		n, err := readFD(fd, c.rp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // wait until readable
		case err != nil:
			c.rerr = os.NewSyscallError("read", err)
		}
		c.rn = n
		return true
	}
}

// Write writes all of p, waiting for room in the socket as long as the
// connection's write deadline allows.
func (c *fdConn) Write(p []byte) (int, error) {
	c.wp = p
	err := c.raw.Write(c.writeFn)
	n := len(p) - len(c.wp)
	if err == nil {
		err = c.werr
	}
	c.wp, c.werr = nil, nil
	return n, err
}

func (c *fdConn) write(fd uintptr) bool {
	c.wp, c.werr = writeNonBlocking(fd, c.wp)
	return c.werr != nil || len(c.wp) == 0
}
