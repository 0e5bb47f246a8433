package store

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func pod(name string) Object { return Object{Resource: Pods, Namespace: "default", Name: name} }

func TestGet(t *testing.T) {
	node := Object{Resource: Nodes, Name: "gpu-1"}
	cases := []struct {
		name    string
		setup   func(s *Store)
		obj     Object
		metric  string
		now     time.Time
		want    Sample
		wantErr error
	}{
		{
			name:    "never reported",
			setup:   func(*Store) {},
			obj:     pod("a"),
			metric:  "vllm_num_requests_waiting",
			now:     t0,
			wantErr: ErrNotFound,
		},
		{
			name: "fresh",
			setup: func(s *Store) {
				s.Replace("pod/default/a", t0, []Value{{Object: pod("a"), Metric: "m", Value: 3}})
			},
			obj: pod("a"), metric: "m", now: t0.Add(10 * time.Second),
			want: Sample{Value: 3, Timestamp: t0},
		},
		{
			name: "exactly at the bound is served",
			setup: func(s *Store) {
				s.Replace("pod/default/a", t0, []Value{{Object: pod("a"), Metric: "m", Value: 3}})
			},
			obj: pod("a"), metric: "m", now: t0.Add(30 * time.Second),
			want: Sample{Value: 3, Timestamp: t0},
		},
		{
			name: "stale",
			setup: func(s *Store) {
				s.Replace("pod/default/a", t0, []Value{{Object: pod("a"), Metric: "m", Value: 3}})
			},
			obj: pod("a"), metric: "m", now: t0.Add(31 * time.Second),
			wantErr: ErrStale,
		},
		{
			name: "replace drops series the source stopped reporting",
			setup: func(s *Store) {
				s.Replace("pod/default/a", t0, []Value{{Object: pod("a"), Metric: "m", Value: 3}})
				s.Replace("pod/default/a", t0.Add(time.Second), []Value{{Object: pod("a"), Metric: "other", Value: 1}})
			},
			obj: pod("a"), metric: "m", now: t0.Add(2 * time.Second),
			wantErr: ErrNotFound,
		},
		{
			name: "newest of two sources wins",
			setup: func(s *Store) {
				s.Replace("node/gpu-1", t0.Add(5*time.Second), []Value{{Object: pod("a"), Metric: "m", Value: 7}})
				s.Replace("pod/default/a", t0, []Value{{Object: pod("a"), Metric: "m", Value: 3}})
			},
			obj: pod("a"), metric: "m", now: t0.Add(6 * time.Second),
			want: Sample{Value: 7, Timestamp: t0.Add(5 * time.Second)},
		},
		{
			name: "forgetting one source keeps the other's value",
			setup: func(s *Store) {
				s.Replace("node/gpu-1", t0, []Value{{Object: pod("a"), Metric: "m", Value: 7}, {Object: node, Metric: "m", Value: 1}})
				s.Replace("pod/default/a", t0, []Value{{Object: pod("a"), Metric: "m", Value: 3}})
				s.Forget("node/gpu-1")
			},
			obj: pod("a"), metric: "m", now: t0,
			want: Sample{Value: 3, Timestamp: t0},
		},
		{
			name: "node value",
			setup: func(s *Store) {
				s.Replace("node/gpu-1", t0, []Value{{Object: node, Metric: "DCGM_FI_DEV_GPU_UTIL", Value: 88}})
			},
			obj: node, metric: "DCGM_FI_DEV_GPU_UTIL", now: t0,
			want: Sample{Value: 88, Timestamp: t0},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(30 * time.Second)
			tc.setup(s)
			got, err := s.Get(tc.obj, tc.metric, tc.now)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Get (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestMetricsListsOnlyFresh(t *testing.T) {
	s := New(30 * time.Second)
	s.Replace("pod/default/a", t0, []Value{
		{Object: pod("a"), Metric: "vllm_num_requests_waiting", Value: 1},
		{Object: pod("a"), Metric: "DCGM_CUSTOM_PROCESS_SM_UTIL", Value: 1},
	})
	s.Replace("pod/default/b", t0.Add(time.Minute), []Value{{Object: pod("b"), Metric: "vllm_num_requests_waiting", Value: 1}})
	s.Replace("node/n", t0.Add(time.Minute), []Value{{Object: Object{Resource: Nodes, Name: "n"}, Metric: "DCGM_FI_DEV_GPU_UTIL", Value: 1}})
	want := []MetricInfo{
		{Resource: Nodes, Metric: "DCGM_FI_DEV_GPU_UTIL"},
		{Resource: Pods, Metric: "vllm_num_requests_waiting"},
	}
	if diff := cmp.Diff(want, s.Metrics(t0.Add(time.Minute))); diff != "" {
		t.Errorf("Metrics (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"node/n", "pod/default/a", "pod/default/b"}, s.Sources()); diff != "" {
		t.Errorf("Sources (-want,+got):\n%s", diff)
	}
	s.Forget("pod/default/a")
	if got := s.Len(); got != 2 {
		t.Errorf("Len after Forget = %d, want 2", got)
	}
}

func BenchmarkReplaceAndGet(b *testing.B) {
	s := New(time.Minute)
	vals := make([]Value, 0, 20)
	for i := range 20 {
		vals = append(vals, Value{Object: pod("a"), Metric: "m" + string(rune('a'+i)), Value: float64(i)})
	}
	for b.Loop() {
		s.Replace("pod/default/a", t0, vals)
		if _, err := s.Get(pod("a"), "mc", t0); err != nil {
			b.Fatal(err)
		}
	}
}
