package upstream

import (
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	a := r.Get("a:1")
	if r.Get("a:1") != a {
		t.Fatal("Get does not return the same upstream")
	}
	a.Begin()
	a.Begin()
	a.End()
	if a.Outstanding() != 1 {
		t.Fatalf("outstanding = %d, want 1", a.Outstanding())
	}
	r.Get("b:1")
	r.Retain(map[string]bool{})
	got := r.Addresses()
	sort.Strings(got)
	if d := cmp.Diff([]string{"a:1"}, got); d != "" {
		t.Errorf("Retain must keep busy replicas only (-want,+got):\n%s", d)
	}
	a.End()
	r.Retain(map[string]bool{})
	if len(r.Addresses()) != 0 {
		t.Error("idle replica kept")
	}
}

func TestLoadFreshness(t *testing.T) {
	var u Upstream
	now := time.Unix(100, 0)
	if _, ok := u.Load(now, time.Second); ok {
		t.Fatal("load before any scrape")
	}
	u.SetLoad(Load{Waiting: 2, At: now})
	if l, ok := u.Load(now.Add(time.Second), time.Second); !ok || l.Waiting != 2 {
		t.Errorf("fresh load = %+v %v", l, ok)
	}
	if _, ok := u.Load(now.Add(1001*time.Millisecond), time.Second); ok {
		t.Error("stale load used")
	}
}
