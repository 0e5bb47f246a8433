package llm

import "time"

// Window keeps the recent samples of one service, oldest first, for Decide.
// It is not safe for concurrent use.
type Window struct {
	samples []Sample
}

// Add appends s (a sample older than the newest one is dropped) and forgets
// the samples older than keep before s.
func (w *Window) Add(s Sample, keep time.Duration) {
	if n := len(w.samples); n > 0 && s.Time.Before(w.samples[n-1].Time) {
		return
	}
	w.samples = append(w.samples, s)
	from := s.Time.Add(-keep)
	i := 0
	for i < len(w.samples) && !w.samples[i].Time.After(from) {
		i++
	}
	if i > 0 {
		w.samples = append(w.samples[:0], w.samples[i:]...)
	}
}

// Samples returns the kept samples, oldest first. The slice is the window's
// own: do not change it.
func (w *Window) Samples() []Sample { return w.samples }

// Len is the number of kept samples.
func (w *Window) Len() int { return len(w.samples) }
