//go:build !linux

package h1

import (
	"context"
	"net"
	"syscall"
)

// LoopSupported reports whether Loop runs its event loops here.
func LoopSupported() bool { return false }

// Serve serves l with Server: no event loops here.
func (lp *Loop) Serve(l net.Listener) error { return lp.Server.Serve(l) }

// Shutdown shuts Server down.
func (lp *Loop) Shutdown(ctx context.Context) error { return lp.Server.Shutdown(ctx) }

// Close closes Server.
func (lp *Loop) Close() error { return lp.Server.Close() }

type evloop struct{}

func giveFD(syscall.RawConn, func(fd int) bool) bool { return false }
