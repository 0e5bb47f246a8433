package outlier

import (
	"testing"
	"time"
)

func TestEjection(t *testing.T) {
	p := Policy{Consecutive: 2, BaseEjection: 10 * time.Second, MaxEjection: 25 * time.Second}
	t0 := time.Unix(1000, 0)
	var s State
	if s.Failure(p, t0) {
		t.Fatal("ejected after one failure, want two")
	}
	s.Success(t0)
	if s.Failure(p, t0) {
		t.Fatal("a success must reset the count")
	}
	if !s.Failure(p, t0) {
		t.Fatal("not ejected after two consecutive failures")
	}
	if !s.Ejected(t0.Add(9 * time.Second)) {
		t.Error("not ejected 9s after")
	}
	if s.Ejected(t0.Add(10 * time.Second)) {
		t.Error("still ejected after 10s")
	}
	// Second ejection lasts twice as long, third is capped at MaxEjection.
	t1 := t0.Add(11 * time.Second)
	s.Failure(p, t1)
	if !s.Failure(p, t1) || !s.Ejected(t1.Add(19*time.Second)) || s.Ejected(t1.Add(20*time.Second)) {
		t.Error("second ejection should last 20s")
	}
	t2 := t1.Add(21 * time.Second)
	s.Failure(p, t2)
	s.Failure(p, t2)
	if !s.Ejected(t2.Add(24*time.Second)) || s.Ejected(t2.Add(25*time.Second)) {
		t.Error("third ejection should be capped at 25s")
	}
	// A healthy success after the ejection forgets the history.
	s.Success(t2.Add(30 * time.Second))
	t3 := t2.Add(31 * time.Second)
	s.Failure(p, t3)
	s.Failure(p, t3)
	if s.Ejected(t3.Add(10 * time.Second)) {
		t.Error("history not forgotten after a healthy success")
	}
}

func TestDefaults(t *testing.T) {
	var s State
	now := time.Unix(0, 0)
	for range 2 {
		if s.Failure(Policy{}, now) {
			t.Fatal("default policy ejects before 3 failures")
		}
	}
	if !s.Failure(Policy{}, now) || !s.Ejected(now.Add(9*time.Second)) {
		t.Fatal("default policy: 3 failures eject for 10s")
	}
}
