//go:build linux

package h1

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// hangupWatcher notices clients that close their connection while a request
// is in flight: every server connection is registered once with one epoll
// instance for EPOLLRDHUP only (data arriving does not wake it), and one
// goroutine cancels the context of the connections it reports. It replaces
// a read per request waiting for the client to leave.
type hangupWatcher struct {
	epfd  int
	mu    sync.Mutex
	conns map[uint64]*serverConn
}

// hangups is the process's watcher, started on first use.
var hangups = sync.OnceValues(func() (*hangupWatcher, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("h1: epoll_create1: %w", err)
	}
	w := &hangupWatcher{epfd: fd, conns: map[uint64]*serverConn{}}
	go w.run()
	return w, nil
})

// add watches c until remove. A connection that cannot be registered is
// served without the watch (logged).
func (w *hangupWatcher) add(c *serverConn) {
	w.mu.Lock()
	w.conns[c.id] = c
	w.mu.Unlock()
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		// The event's data is the connection's id, never reused (an fd
		// number is).
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
		err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		w.remove(c)
		c.s.Log.Error(err, "watching a connection for hang-ups; a client leaving will not cancel its request", "remote", c.remote)
	}
}

// remove forgets c; closing its socket takes it out of the epoll set.
func (w *hangupWatcher) remove(c *serverConn) {
	w.mu.Lock()
	delete(w.conns, c.id)
	w.mu.Unlock()
}

// forget stops watching c, whose socket stays open (handed back to the
// event loop): its registration is taken out of the epoll set.
func (w *hangupWatcher) forget(c *serverConn) {
	_ = c.raw.Control(func(fd uintptr) { _ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	w.remove(c)
}

// watched counts the connections being watched.
func (w *hangupWatcher) watched() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.conns)
}

func (w *hangupWatcher) run() {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("h1: epoll_wait: %v", err)) // EBADF/EFAULT/EINVAL: a bug, not a condition
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			w.mu.Lock()
			c := w.conns[id]
			w.mu.Unlock()
			if c != nil {
				c.cancel(errClientGone)
			}
		}
	}
}
