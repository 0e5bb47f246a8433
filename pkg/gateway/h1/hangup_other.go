//go:build !linux

package h1

import "errors"

// hangupWatcher needs epoll; elsewhere Server is not supported.
type hangupWatcher struct{}

func hangups() (*hangupWatcher, error) {
	return nil, errors.New("h1: Server needs epoll (Linux); use net/http")
}

func (*hangupWatcher) add(*serverConn)    {}
func (*hangupWatcher) remove(*serverConn) {}
func (*hangupWatcher) forget(*serverConn) {}
func (*hangupWatcher) watched() int       { return 0 }
