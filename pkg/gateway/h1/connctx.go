package h1

import (
	"context"
	"sync"
)

// connContext is the context of a served connection, and so of every
// request on it. Besides being cancelled (client gone, server closing) it
// keeps one function to run at the cancel: Transport puts there what cuts
// its engine connection, instead of a context.AfterFunc registration (two
// allocations, and an insertion into and removal from the context's
// children, per request). A second function at once, or one given after the
// cancel, goes to context.AfterFunc.
type connContext struct {
	context.Context
	cancelCause context.CancelCauseFunc
	mu          sync.Mutex
	onCancel    func()
	cancelled   bool
}

func newConnContext() *connContext {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &connContext{Context: ctx, cancelCause: cancel}
}

// cancel ends the context with cause, then runs the kept function.
func (c *connContext) cancel(cause error) {
	c.cancelCause(cause)
	c.mu.Lock()
	f := c.onCancel
	c.onCancel, c.cancelled = nil, true
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// watch keeps f to run at the cancel; false when another function is kept
// or the context has ended (f is not kept).
func (c *connContext) watch(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled || c.onCancel != nil {
		return false
	}
	c.onCancel = f
	return true
}

// unwatch drops the kept function: true when it had not been taken by the
// cancel (context.AfterFunc's stop).
func (c *connContext) unwatch() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.onCancel == nil {
		return false
	}
	c.onCancel = nil
	return true
}
