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
		runRate(context.Background(), srv.URL, plain, schedule, c.conns, &acc)
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

func TestTakeTurnsRotatesAndSpread(t *testing.T) {
	var order []string
	targets := []target{{name: "a"}, {name: "b"}, {name: "c"}}
	acc := takeTurns(targets, 4, func(tg target, s *samples) {
		order = append(order, tg.name)
		s.lat = append(s.lat, time.Millisecond)
	})
	if want := []string{"a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"}; !slices.Equal(order, want) {
		t.Fatalf("turns %v, want %v (each round starts with the next target)", order, want)
	}
	if n := len(acc["b"].rounds); n != 4 || acc["b"].rounds[0].requests != 1 {
		t.Fatalf("b's rounds %+v, want 4 of 1 request", acc["b"].rounds)
	}

	a := &samples{rounds: []round{{10, 20}, {10, 30}, {0, 5}, {10, 10}}}
	b := &samples{rounds: []round{{10, 10}, {10, 10}, {10, 10}, {20, 10}}}
	// Per-round ratios 2, 3, (no request: left out), 2: median 2, 2–3.
	if m, lo, hi, ok := spread(a, b); !ok || m != 2 || lo != 2 || hi != 3 {
		t.Fatalf("spread %v %v %v %v, want median 2 in 2–3", m, lo, hi, ok)
	}
	if _, _, _, ok := spread(&samples{}, b); ok {
		t.Fatal("spread of no rounds reported")
	}
}
