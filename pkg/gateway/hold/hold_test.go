package hold

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }
func (s *signal) get() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}
func (s *signal) fire() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

func waitHeld(t *testing.T, h *Holder, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Held(key) != n {
		if time.Now().After(deadline) {
			t.Fatalf("held = %d, want %d", h.Held(key), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReleasedWhenReady(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	h := New(2, time.Minute, WithClock(clk))
	var ready atomic.Bool
	sig := newSignal()
	errc := make(chan error, 1)
	go func() { errc <- h.Wait(context.Background(), "ns/a", ready.Load, sig.get) }()
	waitHeld(t, h, "ns/a", 1)
	sig.fire() // a change that does not make it ready: still held
	ready.Store(true)
	sig.fire()
	if err := <-errc; err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if h.Held("ns/a") != 0 {
		t.Error("held count not released")
	}
}

func TestTimeoutAndQueueFull(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	h := New(2, 30*time.Second, WithClock(clk))
	never := func() bool { return false }
	sig := newSignal()
	errc := make(chan error, 2)
	for range 2 {
		go func() { errc <- h.Wait(context.Background(), "ns/a", never, sig.get) }()
	}
	waitHeld(t, h, "ns/a", 2)
	if err := h.Wait(context.Background(), "ns/a", never, sig.get); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third Wait = %v, want ErrQueueFull", err)
	}
	// Another service has its own queue.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { errc <- h.Wait(ctx, "ns/b", never, sig.get) }()
	waitHeld(t, h, "ns/b", 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait = %v", err)
	}
	for clk.Waiters() < 2 { // both held requests armed their timers
		time.Sleep(time.Millisecond)
	}
	clk.Step(29 * time.Second)
	select {
	case err := <-errc:
		t.Fatalf("returned before the timeout: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	clk.Step(time.Second)
	for range 2 {
		if err := <-errc; !errors.Is(err, ErrTimeout) {
			t.Fatalf("Wait = %v, want ErrTimeout", err)
		}
	}
}

func TestReadyImmediately(t *testing.T) {
	h := New(0, time.Second)
	if err := h.Wait(context.Background(), "x", func() bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
}
