package metrics

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInFlightReport(t *testing.T) {
	m := New(prometheus.NewRegistry())
	endB := m.Begin("ns", "b")
	endA := m.Begin("ns", "a")
	endHold := m.BeginHold("ns", "a")
	now := time.Unix(5, 0)
	want := InFlightReport{Time: now, Services: []ServiceInFlight{{Namespace: "ns", Name: "a", InFlight: 1, Held: 1}, {Namespace: "ns", Name: "b", InFlight: 1}}}
	if d := cmp.Diff(want, m.Report(now)); d != "" {
		t.Errorf("Report (-want,+got):\n%s", d)
	}
	if v := testutil.ToFloat64(m.InFlight.WithLabelValues("ns", "a")); v != 1 {
		t.Errorf("gauge = %v", v)
	}
	endHold()
	endA()
	endA()
	endB()
	if v := testutil.ToFloat64(m.InFlight.WithLabelValues("ns", "a")); v != 0 {
		t.Errorf("gauge after end = %v", v)
	}
	if m.Pool("ns", "a", "idc") != m.Pool("ns", "a", "idc") {
		t.Error("pool children not cached")
	}
}
