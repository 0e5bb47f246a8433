package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoissonSchedule(t *testing.T) {
	const rate = 2000.0
	d := 5 * time.Second
	s := poisson(rate, d, 1)
	if want := rate * d.Seconds(); float64(len(s)) < 0.95*want || float64(len(s)) > 1.05*want {
		t.Fatalf("%d arrivals in %s at %.0f/s, want about %.0f", len(s), d, rate, want)
	}
	if !slices.IsSorted(s) || s[0] < 0 || s[len(s)-1] >= d {
		t.Fatalf("arrivals not increasing within [0, %s): first %s last %s", d, s[0], s[len(s)-1])
	}
	if again := poisson(rate, d, 1); !slices.Equal(s, again) {
		t.Fatal("the same seed gave another schedule: targets would not see the same traffic")
	}
	if other := poisson(rate, d, 2); slices.Equal(s, other) {
		t.Fatal("another seed gave the same schedule")
	}
	// Exponential gaps: about 1/e of them are longer than the mean gap.
	long := 0
	for i := 1; i < len(s); i++ {
		if s[i]-s[i-1] > time.Duration(float64(time.Second)/rate) {
			long++
		}
	}
	if f := float64(long) / float64(len(s)-1); f < 0.33 || f > 0.41 {
		t.Fatalf("%.2f of the gaps exceed the mean, want about 0.37 (exponential)", f)
	}
}

func TestRunRateSendsTheScheduleOpenLoop(t *testing.T) {
	for _, c := range []struct {
		conns int
		// whether most requests wait behind the slow first answer
		held bool
	}{{conns: 8}, {conns: 1, held: true}} {
		var served atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if served.Add(1) == 1 {
				time.Sleep(200 * time.Millisecond)
			}
			_, _ = w.Write([]byte(`{}`))
		}))
		schedule := poisson(500, 300*time.Millisecond, 3)
		var acc samples
		runRate(context.Background(), srv.URL, false, schedule, c.conns, &acc)
		srv.Close()
		if len(acc.lat) != len(schedule) || acc.errors != 0 || int(served.Load()) != len(schedule) {
			t.Fatalf("%d connections: %d latencies, %d errors, %d served for %d scheduled", c.conns, len(acc.lat), acc.errors, served.Load(), len(schedule))
		}
		if worst := pct(acc.lat, 1); worst < 200*time.Millisecond {
			t.Fatalf("%d connections: worst latency %s, want the slow answer's 200ms counted", c.conns, worst)
		}
		// With one connection the requests released during the slow answer
		// wait for it, and that wait is their latency (no coordinated
		// omission); with eight, the others pass it.
		if p50 := pct(acc.lat, 0.5); (p50 > 50*time.Millisecond) != c.held {
			t.Fatalf("%d connections: median latency %s, held back: want %v", c.conns, p50, c.held)
		}
	}
}
