package llm

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A step down from 40 requests (5 replicas) to 16 (2): nothing is removed
// before the scale-down delay has passed since the last sample that still
// asked for 5; then the count goes down, never below 2, never up again.
func TestStepDown(t *testing.T) {
	const step = 6 * time.Minute
	c := newCluster(spec(1, 10), 5, 20*time.Second, 10)
	c.run(14*time.Minute, func(t time.Duration) float64 {
		if t < step {
			return 40
		}
		return 16
	})
	if s := c.at(step - tick); s.desired != 5 {
		t.Fatalf("before the step: desired %d, want 5", s.desired)
	}
	// The stable mean (60 s) stays above 32 (5 replicas' worth) for 18 s
	// after the step; the delay runs from there.
	for _, s := range c.history {
		if s.t >= step && s.t < step+DefaultScaleDownDelay+18*time.Second && s.desired != 5 {
			t.Fatalf("at %s desired %d: scaled down before the delay", s.t, s.desired)
		}
	}
	if s := c.at(step + DefaultScaleDownDelay + DefaultStableWindow + tick); s.desired != 2 {
		t.Errorf("a delay and a stable window after the step: desired %d, want 2 (16 / 8)", s.desired)
	}
	// The stable mean (40(60-x) + 16x) / 60 drops to 32, 24, 16 at x = 20,
	// 40, 60 s after the step; each lower count follows its last higher
	// recommendation (x = 18, 38, 58 s on the 2 s tick) by the delay.
	if d := cmp.Diff([]string{"11m18s:5->4", "11m38s:4->3", "11m58s:3->2"}, c.changes()); d != "" {
		t.Errorf("changes (-want,+got):\n%s", d)
	}
}

// A ramp to 48 requests while new replicas take three minutes to boot: the
// queue builds on the one ready replica, yet starting replicas count as
// capacity, so the service never asks for more than the ramp's 48 / 8 = 6,
// and never scales down on the way.
func TestRampWhileReplicasBoot(t *testing.T) {
	c := newCluster(spec(1, 20), 1, 3*time.Minute, 10)
	c.run(8*time.Minute, func(t time.Duration) float64 {
		return math.Min(48, 48*t.Seconds()/120)
	})
	if got := c.maxDesired(); got != 6 {
		t.Errorf("max desired %d, want 6", got)
	}
	prev := int32(0)
	for _, s := range c.history {
		if s.desired < prev {
			t.Fatalf("scaled down during the ramp at %s: %d -> %d", s.t, prev, s.desired)
		}
		prev = s.desired
	}
}
