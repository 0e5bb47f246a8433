//go:build linux

package h1

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LoopSupported reports whether Loop runs its event loops here.
func LoopSupported() bool { return Supported() }

// Serve runs the event loops on l until Shutdown or Close, then returns
// http.ErrServerClosed. A listener that is not TCP is served by Server.
func (lp *Loop) Serve(l net.Listener) error {
	tl, ok := l.(*net.TCPListener)
	if !ok || lp.Fast == nil {
		return lp.Server.Serve(l)
	}
	lfd, err := dupListener(tl)
	if err != nil {
		return err
	}
	_ = l.Close() // the duplicate keeps listening
	n := lp.Loops
	if n <= 0 {
		n = max(runtime.GOMAXPROCS(0)-1, 1)
	}
	lp.mu.Lock()
	if lp.closing.Load() || lp.done != nil {
		lp.mu.Unlock()
		_ = syscall.Close(lfd)
		return http.ErrServerClosed
	}
	lp.done = make(chan struct{})
	for range n {
		el, err := newEvloop(lp, lfd)
		if err != nil {
			for _, el := range lp.loops {
				el.closeFDs()
			}
			lp.loops = nil
			close(lp.done)
			lp.mu.Unlock()
			_ = syscall.Close(lfd)
			return err
		}
		lp.loops = append(lp.loops, el)
	}
	lp.lfds.Store(int32(n))
	loops := lp.loops
	lp.mu.Unlock()
	ended := make(chan struct{}, n)
	for _, el := range loops {
		go func() {
			defer func() { ended <- struct{}{} }()
			el.run()
		}()
	}
	for range n {
		<-ended
	}
	close(lp.done)
	return http.ErrServerClosed
}

// dupListener is a non-blocking duplicate of l's descriptor.
func dupListener(l *net.TCPListener) (int, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, err := dupFD(rc)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// dupFD duplicates rc's descriptor (close-on-exec).
func dupFD(rc syscall.RawConn) (int, error) {
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

// giveFD offers a duplicate of rc's descriptor to take, and closes it when
// take refuses it.
func giveFD(rc syscall.RawConn, take func(fd int) bool) bool {
	fd, err := dupFD(rc)
	if err != nil {
		return false
	}
	if take(fd) {
		return true
	}
	_ = syscall.Close(fd)
	return false
}

// Shutdown stops accepting, closes idle connections, lets exchanges in
// flight finish (their connections close after the answer) and returns
// when none is left — on the loops and on Server — or with ctx's error.
func (lp *Loop) Shutdown(ctx context.Context) error {
	lp.closing.Store(true)
	lp.wake()
	serr := make(chan error, 1)
	go func() { serr <- lp.Server.Shutdown(ctx) }()
	lp.mu.Lock()
	done := lp.done
	lp.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return <-serr
}

// Close closes every connection at once.
func (lp *Loop) Close() error {
	lp.forced.Store(true)
	lp.closing.Store(true)
	lp.wake()
	return lp.Server.Close()
}

func (lp *Loop) wake() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for _, el := range lp.loops {
		el.wake()
	}
}

// evloop is one event loop: its epoll instance, the client connections it
// accepted and its upstream connections.
type evloop struct {
	lp         *Loop
	ep         int      // the epoll instance
	epf        *os.File // ep in Go's poller, where an idle loop parks
	epc        syscall.RawConn
	relistenAt time.Time // accepting pauses after an error until then
	yieldAt    time.Time // when the loop lets other goroutines run next
	evfd       int       // eventfd: Shutdown and Close wake the loop
	lfd        int       // the listening descriptor (shared by the loops)
	events     []unix.EpollEvent
	fds        []pollee // by descriptor
	clients    map[*lconn]struct{}
	idle       map[string][]*lup // idle upstream connections by address
	addrs      map[string]unix.Sockaddr
	rbuf       []byte // upstream reads
	capture    captured
	now        time.Time
	sweepAt    time.Time // next look at deadlines (zero: nothing to look at)
	closing    bool
	listenOn   bool

	// connections Server hands back (adopt)
	backMu      sync.Mutex
	back        []adopted
	backWaiting atomic.Bool
	ended       bool
}

type pollee interface{ handle(events uint32) }

// pollee is what descriptor fd is for (nil: the listener, the eventfd, or
// one no longer watched).
func (el *evloop) pollee(fd int32) pollee {
	if int(fd) < len(el.fds) {
		return el.fds[fd]
	}
	return nil
}

func (el *evloop) setPollee(fd int, p pollee) {
	if fd >= len(el.fds) {
		if p == nil {
			return
		}
		el.fds = append(el.fds, make([]pollee, fd+1-len(el.fds)+64)...)
	}
	el.fds[fd] = p
}

// sweepEvery is how often deadlines are looked at while there are
// connections: timeouts are precise to about this.
const sweepEvery = 50 * time.Millisecond

func newEvloop(lp *Loop, lfd int) (*evloop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = syscall.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	el := &evloop{lp: lp, ep: ep, evfd: evfd, lfd: lfd, events: make([]unix.EpollEvent, 256),
		clients: map[*lconn]struct{}{}, idle: map[string][]*lup{},
		addrs: map[string]unix.Sockaddr{}, rbuf: make([]byte, 64<<10)}
	el.capture.header = http.Header{}
	if err := el.ctl(unix.EPOLL_CTL_ADD, evfd, unix.EPOLLIN); err != nil {
		el.closeFDs()
		return nil, err
	}
	if err := el.ctl(unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE); err != nil {
		el.closeFDs()
		return nil, err
	}
	if err := el.pollable(); err != nil {
		el.closeFDs()
		return nil, err
	}
	el.listenOn = true
	return el, nil
}

func (el *evloop) closeFDs() {
	if el.epf != nil {
		_ = el.epf.Close() // closes ep
	} else {
		_ = syscall.Close(el.ep)
	}
	_ = syscall.Close(el.evfd)
}

// pollable registers the epoll descriptor in Go's poller (it is readable
// while events are ready), for park.
func (el *evloop) pollable() error {
	if err := syscall.SetNonblock(el.ep, true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	el.epf = os.NewFile(uintptr(el.ep), "epoll")
	rc, err := el.epf.SyscallConn()
	if err != nil {
		return err
	}
	el.epc = rc
	return nil
}

func (el *evloop) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(el.evfd, one[:])
}

func (el *evloop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(el.ep, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// wait returns the ready events. A busy loop waits in epoll_wait as a raw
// system call, as nginx waits: no goroutine parks, and the P stays with the
// loop; other goroutines get the P at least every yieldEvery (see run).
// After busyWait without an event the loop is idle: it parks in Go's poller
// (the P free for the rest of the process) until an event, a wake-up or the
// next sweep.
//
// Measured against parking in Go's poller on every wait (four epoll_pwait
// calls and a goroutine switch per wake-up) and against a blocking call the
// runtime knows of (after 20 µs sysmon hands the P to a new spinning
// thread: a futex wake-up and two context switches per wake-up): 5–10 %
// less CPU per request than either.
func (el *evloop) wait() int {
	ms := busyWait
	if !el.sweepAt.IsZero() {
		// Rounded up: a wait of 0 ms until the sweep would spin.
		ms = min(ms, max(int((el.sweepAt.Sub(el.now)+time.Millisecond-1)/time.Millisecond), 0))
	}
	if n := el.epollWait(ms); n > 0 {
		return n
	}
	if ms < busyWait {
		return 0 // the sweep is due
	}
	return el.park()
}

// epollWait is epoll_wait on the loop's descriptor, a raw system call, for
// at most ms: the number of events (0 after a time-out or a signal).
func (el *evloop) epollWait(ms int) int {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(el.ep),
		uintptr(unsafe.Pointer(&el.events[0])), uintptr(len(el.events)), uintptr(ms), 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

// park waits in Go's poller for the loop's next events, at most until the
// next sweep.
func (el *evloop) park() int {
	_ = el.epf.SetReadDeadline(el.sweepAt) // zero: none
	n := 0
	_ = el.epc.Read(func(uintptr) bool {
		n = el.epollWait(0)
		return n > 0
	})
	el.yieldAt = time.Now().Add(yieldEvery)
	return n
}

const (
	// yieldEvery: a busy loop lets other goroutines run this often.
	yieldEvery = time.Millisecond
	// busyWait (ms): a loop that had no event for this long parks.
	busyWait = 1
)

func (el *evloop) run() {
	lp := el.lp
	for {
		n := el.wait()
		el.now = time.Now()
		for i := range n {
			ev := el.events[i]
			if p := el.pollee(ev.Fd); p != nil {
				p.handle(ev.Events)
			} else if int(ev.Fd) == el.lfd {
				el.accept()
			} else if int(ev.Fd) == el.evfd {
				var b [8]byte
				_, _ = unix.Read(el.evfd, b[:])
			}
		}
		if el.backWaiting.Load() {
			el.takeBack()
		}
		if lp.closing.Load() {
			if !el.closing {
				el.startClosing()
			}
			if lp.forced.Load() {
				for c := range el.clients {
					c.gone()
				}
			}
			if len(el.clients) == 0 {
				el.end()
				return
			}
		}
		if !el.listenOn && !el.closing && el.now.After(el.relistenAt) {
			el.listenOn = el.ctl(unix.EPOLL_CTL_ADD, el.lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE) == nil
		}
		el.sweep()
		if el.now.After(el.yieldAt) {
			runtime.Gosched()
			el.yieldAt = el.now.Add(yieldEvery)
		}
	}
}

// startClosing stops accepting and closes the idle connections; the busy
// ones close after their answer.
func (el *evloop) startClosing() {
	el.closing = true
	if el.listenOn {
		_ = el.ctl(unix.EPOLL_CTL_DEL, el.lfd, 0)
		el.listenOn = false
		if el.lp.lfds.Add(-1) == 0 {
			_ = syscall.Close(el.lfd)
		}
	}
	for c := range el.clients {
		c.closeAfter = true
		if c.ex == nil && len(c.in) == 0 && len(c.out) == 0 {
			c.close()
		}
	}
}

func (el *evloop) end() {
	el.backMu.Lock()
	el.ended = true
	for _, a := range el.back {
		_ = syscall.Close(a.fd)
	}
	el.back = nil
	el.backMu.Unlock()
	for _, list := range el.idle {
		for _, u := range list {
			u.close()
		}
	}
	el.idle = nil
	el.closeFDs()
}

// sweep enforces the deadlines, every sweepEvery.
func (el *evloop) sweep() {
	now := el.now
	if now.Before(el.sweepAt) {
		return
	}
	for c := range el.clients {
		c.checkDeadlines(now)
	}
	idleFor := el.lp.upstreamIdleTimeout()
	for addr, list := range el.idle {
		kept := list[:0]
		for _, u := range list {
			if now.Sub(u.idleSince) > idleFor {
				u.close()
				continue
			}
			kept = append(kept, u)
		}
		if len(kept) == 0 {
			delete(el.idle, addr)
		} else {
			el.idle[addr] = kept
		}
	}
	at := time.Time{}
	if len(el.clients) > 0 || len(el.idle) > 0 {
		at = now.Add(sweepEvery)
	}
	el.sweepAt = at
}

func (el *evloop) accept() {
	for range 64 {
		fd, sa, err := unix.Accept4(el.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED:
			return
		case err != nil:
			// Out of descriptors, most likely: stop listening until the
			// next sweep rather than spin on a listener that stays ready.
			el.lp.log().Error(os.NewSyscallError("accept4", err), "accepting a connection; pausing for 100ms")
			_ = el.ctl(unix.EPOLL_CTL_DEL, el.lfd, 0)
			el.listenOn = false
			el.relistenAt = el.now.Add(100 * time.Millisecond)
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		el.addClient(fd, sockaddrString(sa), el.lp.Server.readHeaderTimeout())
	}
}

// addClient serves the client connection fd, whose next request must come
// within timeout.
func (el *evloop) addClient(fd int, remote string, timeout time.Duration) *lconn {
	c := &lconn{el: el, fd: fd, remote: remote, in: make([]byte, 0, 4<<10), interest: unix.EPOLLIN | unix.EPOLLRDHUP}
	c.rdeadline = el.now.Add(timeout)
	if err := el.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
		_ = syscall.Close(fd)
		return nil
	}
	el.setPollee(fd, c)
	el.clients[c] = struct{}{}
	return c
}

// adopt takes back a connection the loop handed to Server, now idle (fd:
// a duplicate Server gives up); false when the loop is closing. It runs on
// Server's goroutine: the loop takes the connection on its next turn.
func (el *evloop) adopt(a adopted) bool {
	el.backMu.Lock()
	defer el.backMu.Unlock()
	if el.ended || el.lp.closing.Load() {
		return false
	}
	el.back = append(el.back, a)
	el.backWaiting.Store(true)
	el.wake()
	return true
}

// adopted is a connection handed back.
type adopted struct {
	fd       int
	remote   string
	handoffs int // handed to Server in a row
}

// takeBack serves the connections handed back.
func (el *evloop) takeBack() {
	el.backMu.Lock()
	back := el.back
	el.back = nil
	el.backWaiting.Store(false)
	el.backMu.Unlock()
	for _, a := range back {
		if el.closing {
			_ = syscall.Close(a.fd)
			continue
		}
		if c := el.addClient(a.fd, a.remote, el.lp.Server.idleTimeout()); c != nil {
			c.handoffs = a.handoffs
		}
	}
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return ""
}

// lconn is a client connection on the loop.
type lconn struct {
	el     *evloop
	fd     int
	remote string
	in     []byte // received and not yet consumed
	out    []byte // to send
	closed bool

	// the exchange in flight
	ex         Exchange
	req        *Request
	reqEnd     int    // end of its request in in
	upReq      []byte // the request as sent upstream (kept for a resend)
	up         *lup
	inc        Incoming // the request, reused
	ans        Answer   // the answer's head, reused
	headAt     int      // where the answer's head starts in out (-1: none built)
	bodySent   bool     // a byte of the answer's body was passed on
	chunkedOut bool

	closeAfter bool
	handoffs   int       // times handed to Server in a row (see maxHandoffs)
	outBlocked bool      // waiting for room in the socket
	readOff    bool      // not reading (too much pipelined input)
	interest   uint32    // the events registered
	rdeadline  time.Time // idle, head or body read
	exDeadline time.Time
	wdeadline  time.Time
	headStart  bool // rdeadline is the head's
	bodyWait   bool // rdeadline is the body's
}

func (c *lconn) handle(events uint32) {
	if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		c.gone()
		return
	}
	if events&unix.EPOLLOUT != 0 {
		c.writable()
		if c.closed {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		c.readable()
	}
}

// maxPipelined bounds input read ahead while an exchange is in flight.
const maxPipelined = 64 << 10

func (c *lconn) readable() {
	if c.ex != nil && len(c.in)-c.reqEnd >= maxPipelined {
		c.setReading(false)
		return
	}
	if cap(c.in)-len(c.in) < 2<<10 {
		c.in = append(c.in, make([]byte, cap(c.in))...)[:len(c.in)]
	}
	n, err := readFD(uintptr(c.fd), c.in[len(c.in):cap(c.in)])
	if err == syscall.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		c.gone()
		return
	}
	c.in = c.in[:len(c.in)+n]
	if c.ex == nil {
		c.process()
	}
}

// setReading turns the reading of input on or off.
func (c *lconn) setReading(on bool) {
	c.readOff = !on
	c.updateInterest()
}

// updateInterest registers what c waits for: input (and hang-ups) unless
// reading is off or output waits, room while output waits.
func (c *lconn) updateInterest() {
	c.el.setInterest(c.fd, &c.interest, interest(!c.readOff && !c.outBlocked, c.outBlocked))
}

// interest is the events to wait for: input and hang-ups when reading,
// room when writing (errors are reported either way).
func interest(read, write bool) uint32 {
	var ev uint32
	if read {
		ev = unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if write {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// process starts the exchange of the next request when it is all here.
func (c *lconn) process() {
	el, lp := c.el, c.el.lp
	if c.closed || c.ex != nil || c.outBlocked {
		return
	}
	if len(c.in) == 0 {
		if c.closeAfter {
			c.close()
			return
		}
		if c.headStart || c.bodyWait || c.rdeadline.IsZero() {
			c.headStart, c.bodyWait = false, false
			c.rdeadline = el.now.Add(lp.Server.idleTimeout())
		}
		return
	}
	start, end := headEnd(c.in)
	if end < 0 {
		if len(c.in) > lp.Server.maxHeaderBytes() {
			c.handoff() // the server answers 431
			return
		}
		if !c.headStart {
			c.headStart = true
			c.rdeadline = el.now.Add(lp.Server.readHeaderTimeout())
		}
		return
	}
	if end-start > lp.Server.maxHeaderBytes() {
		c.handoff()
		return
	}
	r := &c.inc
	f, err := parseIncoming(r, c.remote, string(c.in[start:end]))
	if err != nil || f.chunked || f.expect || r.Minor == 0 || f.remaining > int64(lp.maxFastBody()) {
		c.handoff() // the server answers or serves it
		return
	}
	reqEnd := end + int(f.remaining)
	if len(c.in) < reqEnd {
		if !c.bodyWait {
			c.bodyWait = true
			c.rdeadline = el.now.Add(lp.Server.bodyReadTimeout())
		}
		return
	}
	c.headStart, c.bodyWait = false, false
	r.Body = c.in[end:reqEnd:reqEnd]
	ex := lp.Fast.StartFast(r)
	if ex == nil {
		c.handoff()
		return
	}
	c.ex, c.reqEnd, c.closeAfter = ex, reqEnd, c.closeAfter || r.Close || el.closing
	c.handoffs = 0
	c.headAt, c.bodySent, c.chunkedOut = -1, false, false
	c.rdeadline = time.Time{}
	c.attempt()
}

// attempt sends the request to the next upstream the exchange names, or
// answers with the exchange's failure when none is left.
func (c *lconn) attempt() {
	el := c.el
	for {
		addr, req, deadline, ok := c.ex.Next()
		if !ok {
			c.answerFailure()
			return
		}
		c.exDeadline = deadline
		var err error
		c.upReq, err = appendRequestHead(c.upReq[:0], req, int64(len(req.Body)))
		c.upReq = append(c.upReq, req.Body...)
		if err != nil {
			c.ex.Failed(err)
			continue
		}
		c.req = req
		u, err := el.dial(addr)
		if err != nil {
			c.ex.Failed(fmt.Errorf("connecting to %s: %w", addr, err))
			continue
		}
		c.bind(u)
		return
	}
}

// bind makes u carry the exchange's request.
func (c *lconn) bind(u *lup) {
	c.up = u
	u.c = c
	u.reset()
	u.out = c.upReq
	if !u.connecting {
		u.send()
	}
}

// answerFailure sends the exchange's error answer.
func (c *lconn) answerFailure() {
	el := c.el
	w := &el.capture
	clear(w.header)
	w.status, w.body = 0, w.body[:0]
	ex := c.ex
	c.ex = nil
	ex.Fail(w)
	if w.status == 0 {
		w.status = http.StatusBadGateway
	}
	delete(w.header, "Connection")
	delete(w.header, "Transfer-Encoding")
	delete(w.header, "Trailer")
	w.header["Content-Length"] = []string{strconv.Itoa(len(w.body))}
	c.dropHead()
	c.headAt = len(c.out)
	c.chunkedOut = false
	c.out = appendResponseHead(c.out, w.status, w.header, false)
	c.endHead()
	c.out = append(c.out, w.body...)
	c.endExchange()
}

// appendAnswer puts the head of the upstream's answer in out: its status
// line and fields, and its framing.
func (c *lconn) appendAnswer(a *Answer) {
	c.headAt = len(c.out)
	b := appendStatusLine(c.out, a.Status)
	date := false
	for _, f := range a.Fields {
		date = date || f.Name == "Date"
		b = appendField(b, f.Name, f.Value)
	}
	if !date {
		b = append(b, "Date: "...)
		b = append(b, httpDate()...)
		b = append(b, "\r\n"...)
	}
	c.chunkedOut = false
	switch {
	case a.Status == http.StatusNoContent || a.Status == http.StatusNotModified:
	case a.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, a.ContentLength, 10)
		b = append(b, "\r\n"...)
	default:
		c.chunkedOut = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	c.out = b
	c.endHead()
}

// endHead ends the answer's head: Connection: close when the connection
// ends after it, and the blank line.
func (c *lconn) endHead() {
	if c.closeAfter || c.el.closing {
		c.closeAfter = true
		c.out = append(c.out, "Connection: close\r\n"...)
	}
	c.out = append(c.out, "\r\n"...)
}

// dropHead takes back an answer head not sent yet (the answer is retried).
func (c *lconn) dropHead() {
	if c.headAt >= 0 {
		c.out = c.out[:c.headAt]
		c.headAt = -1
	}
}

// appendBody puts a piece of the answer's body in out.
func (c *lconn) appendBody(p []byte) {
	if c.chunkedOut {
		c.out = strconv.AppendInt(c.out, int64(len(p)), 16)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, p...)
		c.out = append(c.out, "\r\n"...)
		return
	}
	c.out = append(c.out, p...)
}

// endExchange consumes the request, sends what is left and goes on with
// the next request (or closes).
func (c *lconn) endExchange() {
	c.ex, c.req, c.up = nil, nil, nil
	c.headAt = -1
	c.exDeadline = time.Time{}
	c.in = c.in[:copy(c.in, c.in[c.reqEnd:])]
	c.reqEnd = 0
	c.setReading(true)
	c.flush()
	if c.closed || c.outBlocked {
		return
	}
	c.rdeadline = c.el.now.Add(c.el.lp.Server.idleTimeout())
	if c.closeAfter {
		c.close()
		return
	}
	c.process()
}

// flush writes out; what the socket does not take waits for room, and
// the upstream is not read meanwhile.
func (c *lconn) flush() {
	if len(c.out) == 0 || c.outBlocked || c.closed {
		return
	}
	rest, err := writeNonBlocking(uintptr(c.fd), c.out)
	if err != nil {
		c.gone()
		return
	}
	c.headAt = -1
	if len(rest) == 0 {
		c.out = c.out[:0]
		return
	}
	c.out = c.out[:copy(c.out, rest)]
	c.outBlocked = true
	c.wdeadline = c.el.now.Add(c.el.lp.Server.writeTimeout())
	c.updateInterest()
	if c.up != nil {
		c.up.setReading(false)
	}
}

func (c *lconn) writable() {
	if !c.outBlocked {
		return
	}
	rest, err := writeNonBlocking(uintptr(c.fd), c.out)
	if err != nil {
		c.gone()
		return
	}
	c.out = c.out[:copy(c.out, rest)]
	if len(rest) > 0 {
		c.wdeadline = c.el.now.Add(c.el.lp.Server.writeTimeout())
		return
	}
	c.outBlocked = false
	c.wdeadline = time.Time{}
	c.updateInterest()
	switch {
	case c.up != nil:
		c.up.setReading(true)
	case c.ex == nil && c.closeAfter:
		c.close()
	case c.ex == nil:
		c.process()
	}
}

// gone ends the connection: the client left (or the server closes it).
func (c *lconn) gone() {
	if c.closed {
		return
	}
	if c.ex != nil {
		ex := c.ex
		c.ex = nil
		ex.End(ErrClientGone)
	}
	if c.up != nil {
		c.up.close() // the upstream sees the request cancelled
		c.up = nil
	}
	c.close()
}

func (c *lconn) close() {
	if c.closed {
		return
	}
	c.closed = true
	el := c.el
	el.setPollee(c.fd, nil)
	delete(el.clients, c)
	_ = syscall.Close(c.fd) // leaves the epoll set with it
}

// handoff gives the connection, with what was read from it, to Server.
func (c *lconn) handoff() {
	el := c.el
	c.closed = true
	el.setPollee(c.fd, nil)
	delete(el.clients, c)
	_ = el.ctl(unix.EPOLL_CTL_DEL, c.fd, 0)
	f := os.NewFile(uintptr(c.fd), c.remote)
	nc, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		el.lp.log().Error(err, "handing a connection to the server")
		return
	}
	var back func(fd int, remote string) bool
	if n := c.handoffs + 1; n < maxHandoffs {
		back = func(fd int, remote string) bool { return el.adopt(adopted{fd, remote, n}) }
	}
	el.lp.Server.serveConn(nc, append([]byte(nil), c.in...), back)
}

// maxHandoffs: a connection whose requests went to Server this many times
// in a row (none on the loop between) stays there.
const maxHandoffs = 4

func (c *lconn) checkDeadlines(now time.Time) {
	switch {
	case c.ex == nil && !c.rdeadline.IsZero() && !now.Before(c.rdeadline):
		c.gone() // idle too long, or a request that does not come
	case c.outBlocked && !now.Before(c.wdeadline):
		c.gone() // not reading
	case c.ex != nil && !c.exDeadline.IsZero() && !now.Before(c.exDeadline):
		c.upstreamBroke(ErrTimeout)
	case c.up != nil && c.up.connecting && !now.Before(c.up.connectBy):
		c.upstreamBroke(fmt.Errorf("connecting to %s: %w", c.up.addr, ErrTimeout))
	}
}

// upstreamBroke handles the end of the upstream's connection (or the
// exchange's deadline) before the answer ended: before the first byte of
// the body the exchange may try another upstream; after it, a chunked
// answer ends with the exchange's last piece, another is cut off.
func (c *lconn) upstreamBroke(err error) {
	u := c.up
	c.up = nil
	if u != nil {
		u.close()
		if u.reused && !u.gotByte && err != ErrTimeout {
			// A kept-alive connection the upstream had closed: the request
			// once more on a new one, not a failure.
			if nu, derr := c.el.dial(u.addr); derr == nil {
				c.bind(nu)
				return
			}
		}
	}
	if !c.bodySent {
		c.dropHead()
		c.ex.Failed(err)
		c.attempt()
		return
	}
	ex := c.ex
	c.ex = nil
	tail := ex.End(err)
	if !c.chunkedOut {
		c.flush() // what was passed on, then the cut: the answer must not look whole
		c.closeAfterFlush()
		return
	}
	if len(tail) > 0 {
		c.appendBody(tail)
	}
	c.out = append(c.out, "0\r\n\r\n"...)
	c.endExchange()
}

// closeAfterFlush closes once out is written (the exchange has ended).
func (c *lconn) closeAfterFlush() {
	c.closeAfter = true
	if !c.closed && !c.outBlocked {
		c.close()
	}
}

// lup is a connection to an upstream.
type lup struct {
	el         *evloop
	fd         int
	addr       string
	c          *lconn // the client whose exchange it carries; nil when idle
	connecting bool
	connectBy  time.Time
	idleSince  time.Time
	reused     bool
	gotByte    bool
	readOff    bool
	interest   uint32 // the events registered
	out        []byte // request bytes not yet written
	in         []byte // the answer's head as it arrives
	headDone   bool
	keep       bool // may carry another request after this answer
	f          respFraming
	dec        dechunker
}

func (u *lup) reset() {
	u.gotByte, u.headDone, u.keep, u.readOff = false, false, false, false
	u.in = u.in[:0]
	u.f = respFraming{}
	u.dec = dechunker{}
}

func (el *evloop) dial(addr string) (*lup, error) {
	if list := el.idle[addr]; len(list) > 0 {
		u := list[len(list)-1]
		list[len(list)-1] = nil
		if len(list) == 1 {
			delete(el.idle, addr)
		} else {
			el.idle[addr] = list[:len(list)-1]
		}
		u.reused = true
		return u, nil
	}
	sa, err := el.sockaddr(addr)
	if err != nil {
		return nil, err
	}
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u := &lup{el: el, fd: fd, addr: addr}
	switch err := unix.Connect(fd, sa); err {
	case nil:
	case unix.EINPROGRESS:
		u.connecting = true
		u.connectBy = el.now.Add(el.lp.connectTimeout())
	default:
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
	if u.connecting {
		ev = unix.EPOLLOUT
	}
	u.interest = ev
	if err := el.ctl(unix.EPOLL_CTL_ADD, fd, ev); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	el.setPollee(fd, u)
	return u, nil
}

// sockaddr resolves addr (host:port) once.
func (el *evloop) sockaddr(addr string) (unix.Sockaddr, error) {
	if sa, ok := el.addrs[addr]; ok {
		return sa, nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ta, rerr := net.ResolveTCPAddr("tcp", addr)
		if rerr != nil {
			return nil, rerr
		}
		ap = ta.AddrPort()
	}
	var sa unix.Sockaddr
	if a := ap.Addr().Unmap(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	if len(el.addrs) > 4096 {
		clear(el.addrs)
	}
	el.addrs[addr] = sa
	return sa, nil
}

func (u *lup) close() {
	u.el.setPollee(u.fd, nil)
	_ = syscall.Close(u.fd)
	u.c = nil
}

// release returns u to the idle pool, or closes it.
func (u *lup) release() {
	u.c = nil
	if !u.keep || u.el.closing {
		u.close()
		return
	}
	u.idleSince = u.el.now
	u.readOff = false
	u.out = nil
	u.updateInterest()
	u.el.idle[u.addr] = append(u.el.idle[u.addr], u)
}

func (u *lup) setReading(on bool) {
	u.readOff = !on
	u.updateInterest()
}

// updateInterest registers what u waits for: room for the request while
// it is being sent (or the connect), the answer unless paused (the
// client's socket is full; then only errors are reported).
func (u *lup) updateInterest() {
	u.el.setInterest(u.fd, &u.interest, interest(!u.readOff && !u.connecting, u.connecting || len(u.out) > 0))
}

// setInterest changes fd's registration when want differs from *cur.
func (el *evloop) setInterest(fd int, cur *uint32, want uint32) {
	if *cur == want {
		return
	}
	*cur = want
	_ = el.ctl(unix.EPOLL_CTL_MOD, fd, want)
}

func (u *lup) handle(events uint32) {
	c := u.c
	if c == nil { // idle: a close by the upstream, or bytes nobody asked for
		u.dropIdle()
		return
	}
	if u.connecting {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			if err == nil {
				err = os.NewSyscallError("connect", syscall.Errno(errno))
			}
			c.upstreamBroke(fmt.Errorf("connecting to %s: %w", u.addr, err))
			return
		}
		u.connecting = false
		u.send()
		return
	}
	if events&unix.EPOLLOUT != 0 && len(u.out) > 0 {
		u.send()
		if u.c != c {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		u.readable()
	}
}

func (u *lup) dropIdle() {
	list := u.el.idle[u.addr]
	for i, x := range list {
		if x == u {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(u.el.idle, u.addr)
	} else {
		u.el.idle[u.addr] = list
	}
	u.close()
}

// send writes the request; what the socket does not take waits for room.
func (u *lup) send() {
	rest, err := writeNonBlocking(uintptr(u.fd), u.out)
	if err != nil {
		u.c.upstreamBroke(fmt.Errorf("sending to %s: %w", u.addr, err))
		return
	}
	u.out = rest
	u.connectBy = time.Time{}
	u.updateInterest()
}

func (u *lup) readable() {
	c := u.c
	n, err := readFD(uintptr(u.fd), u.el.rbuf)
	if err == syscall.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		u.ended(err)
		return
	}
	u.gotByte = true
	p := u.el.rbuf[:n]
	if !u.headDone {
		u.in = append(u.in, p...)
		for {
			start, end := headEnd(u.in)
			if end < 0 {
				if len(u.in) > maxResponseHead {
					c.upstreamBroke(fmt.Errorf("h1: the answer's head from %s exceeds %d bytes", u.addr, maxResponseHead))
				}
				return
			}
			f, closes, interim, err := parseAnswerHead(string(u.in[start:end]), c.req.Method, &c.ans)
			if err != nil {
				c.upstreamBroke(err)
				return
			}
			if interim {
				u.in = u.in[:copy(u.in, u.in[end:])]
				continue
			}
			u.headDone, u.f, u.keep = true, f, !closes
			if c.ex.Answer(&c.ans) { // retried elsewhere: this answer is dropped with its connection
				c.up = nil
				u.close()
				c.attempt()
				return
			}
			c.appendAnswer(&c.ans)
			p = u.in[end:]
			break
		}
	}
	u.body(p)
}

// body passes a piece of the answer's body on.
func (u *lup) body(p []byte) {
	c := u.c
	var data []byte
	done := false
	switch {
	case u.f.done:
		done = true
		u.keep = u.keep && len(p) == 0
	case u.f.chunked:
		var rest []byte
		var err error
		data, rest, done, err = u.dec.feed(p)
		if len(data) > 0 {
			c.passBody(data)
		}
		if err != nil {
			c.upstreamBroke(fmt.Errorf("the answer from %s: %w", u.addr, err))
			return
		}
		u.keep = u.keep && len(rest) == 0
		data = nil
	case u.f.toEOF:
		data = p
	default:
		take := min(int64(len(p)), u.f.remaining)
		data = p[:take]
		u.f.remaining -= take
		done = u.f.remaining == 0
		u.keep = u.keep && int64(len(p)) == take
	}
	if len(data) > 0 {
		c.passBody(data)
	}
	if done {
		c.answerDone()
		return
	}
	if c.bodySent {
		c.flush()
	}
}

// ended: the upstream closed its connection (err nil) or it failed.
func (u *lup) ended(err error) {
	c := u.c
	if err == nil && u.headDone && u.f.toEOF {
		u.keep = false
		c.answerDone()
		return
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	c.upstreamBroke(fmt.Errorf("the connection to %s: %w", u.addr, err))
}

// passBody hands a piece of the answer to the exchange and queues it.
func (c *lconn) passBody(p []byte) {
	c.ex.Body(p)
	c.appendBody(p)
	c.bodySent = true
}

// answerDone: the answer was passed on whole.
func (c *lconn) answerDone() {
	u := c.up
	if c.chunkedOut {
		c.out = append(c.out, "0\r\n\r\n"...)
	}
	ex := c.ex
	c.ex, c.up = nil, nil
	ex.End(nil)
	u.release()
	c.endExchange()
}
