// Package hold keeps requests for a service that has no ready replica (scaled
// to zero, or every replica still starting) until one becomes ready, up to a
// timeout. Held requests count as in flight, so the autoscaler sees the
// demand. The queue per service is bounded: beyond it requests are refused.
package hold

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Errors of Wait.
var (
	// ErrQueueFull: the service already holds its maximum of requests (429).
	ErrQueueFull = errors.New("too many requests are waiting for a replica of this service")
	// ErrTimeout: no replica became ready in time (503 with Retry-After).
	ErrTimeout = errors.New("no replica of this service became ready in time")
)

// Holder counts and bounds held requests per service.
type Holder struct {
	clock   clock.Clock
	limit   int
	timeout time.Duration

	mu   sync.Mutex
	held map[string]int
}

// Option configures a Holder.
type Option func(*Holder)

// WithClock sets the clock (tests step a fake one).
func WithClock(c clock.Clock) Option { return func(h *Holder) { h.clock = c } }

// New holds at most limit requests per service for up to timeout.
func New(limit int, timeout time.Duration, opts ...Option) *Holder {
	h := &Holder{clock: clock.RealClock{}, limit: limit, timeout: timeout, held: map[string]int{}}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Timeout is the longest a request is held.
func (h *Holder) Timeout() time.Duration { return h.timeout }

// Wait holds a request of service key until ready returns true. changed
// returns a channel that is closed when the answer of ready may have changed.
// It returns nil when ready, ErrQueueFull when the queue is full, ErrTimeout
// after the timeout, or the context's error.
func (h *Holder) Wait(ctx context.Context, key string, ready func() bool, changed func() <-chan struct{}) error {
	if ready() {
		return nil
	}
	h.mu.Lock()
	if h.held[key] >= h.limit {
		h.mu.Unlock()
		return ErrQueueFull
	}
	h.held[key]++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.held[key]--; h.held[key] <= 0 {
			delete(h.held, key)
		}
		h.mu.Unlock()
	}()
	timer := h.clock.NewTimer(h.timeout)
	defer timer.Stop()
	for {
		ch := changed()
		if ready() {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C():
			if ready() {
				return nil
			}
			return ErrTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Held returns the number of requests held for key.
func (h *Holder) Held(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[key]
}
