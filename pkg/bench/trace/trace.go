// Package trace reads LLM request traces in the Azure LLM inference format
// (CSV: TIMESTAMP,ContextTokens,GeneratedTokens) and turns them into a
// replay schedule: when each request is sent, relative to the start, and
// how many prompt and output tokens it has. Speed-up and rate scaling are
// pure transformations of the schedule.
package trace

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// timeLayout is the Azure trace's timestamp format (7 fractional digits).
const timeLayout = "2006-01-02 15:04:05.9999999"

// Request is one request of a trace.
type Request struct {
	// At is when it is sent, relative to the first request of the trace.
	At time.Duration
	// PromptTokens is the number of prompt (context) tokens.
	PromptTokens int
	// OutputTokens is the number of generated tokens.
	OutputTokens int
}

// Parse reads an Azure-format CSV. The header must name TIMESTAMP,
// ContextTokens and GeneratedTokens (in any order; other columns are
// ignored). Rows must be in time order.
func Parse(r io.Reader) ([]Request, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("trace is empty: want a header TIMESTAMP,ContextTokens,GeneratedTokens")
		}
		return nil, fmt.Errorf("reading the trace header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	var idx [3]int
	for i, name := range []string{"TIMESTAMP", "ContextTokens", "GeneratedTokens"} {
		j, ok := col[name]
		if !ok {
			return nil, fmt.Errorf("trace header %q has no column %s", strings.Join(head, ","), name)
		}
		idx[i] = j
	}
	var (
		out   []Request
		first time.Time
		prev  time.Time
	)
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace line %d: %w", line, err)
		}
		for _, j := range idx {
			if j >= len(rec) {
				return nil, fmt.Errorf("trace line %d: %d columns, want at least %d", line, len(rec), j+1)
			}
		}
		ts, err := time.Parse(timeLayout, strings.TrimSpace(rec[idx[0]]))
		if err != nil {
			return nil, fmt.Errorf("trace line %d: TIMESTAMP %q: want YYYY-MM-DD HH:MM:SS.fffffff", line, rec[idx[0]])
		}
		in, err := tokens(rec[idx[1]])
		if err != nil {
			return nil, fmt.Errorf("trace line %d: ContextTokens: %w", line, err)
		}
		gen, err := tokens(rec[idx[2]])
		if err != nil {
			return nil, fmt.Errorf("trace line %d: GeneratedTokens: %w", line, err)
		}
		if len(out) == 0 {
			first = ts
		} else if ts.Before(prev) {
			return nil, fmt.Errorf("trace line %d: TIMESTAMP %s is before the previous row's", line, rec[idx[0]])
		}
		prev = ts
		out = append(out, Request{At: ts.Sub(first), PromptTokens: in, OutputTokens: gen})
	}
	if len(out) == 0 {
		return nil, errors.New("trace has a header but no requests")
	}
	return out, nil
}

func tokens(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	if n < 0 || n > 10_000_000 {
		return 0, fmt.Errorf("%d is out of range 0..10000000", n)
	}
	return n, nil
}

// Transform changes a schedule. SpeedUp > 1 compresses time (2 = twice as
// fast); RateScale scales the number of requests per unit of time: 0.5
// keeps every other request, 2 sends each one twice (the copy at the same
// instant), 1.5 repeats every other one. Limit > 0 keeps only the first
// Limit requests of the result; MaxAt > 0 drops requests scheduled after it.
type Transform struct {
	SpeedUp   float64
	RateScale float64
	Limit     int
	MaxAt     time.Duration
}

// Apply returns the transformed schedule; reqs is not changed.
func (t Transform) Apply(reqs []Request) ([]Request, error) {
	speed, rate := t.SpeedUp, t.RateScale
	if speed == 0 {
		speed = 1
	}
	if rate == 0 {
		rate = 1
	}
	if !(speed > 0) || math.IsInf(speed, 0) {
		return nil, fmt.Errorf("speed-up %v: must be a positive number", t.SpeedUp)
	}
	if !(rate > 0) || math.IsInf(rate, 0) || rate > 100 {
		return nil, fmt.Errorf("rate scale %v: must be in (0, 100]", t.RateScale)
	}
	var out []Request
	for i, r := range reqs {
		// Request i is sent floor((i+1)*rate) - floor(i*rate) times: exact
		// scaling over any prefix, deterministic, no randomness.
		copies := int(math.Floor(float64(i+1)*rate+1e-9)) - int(math.Floor(float64(i)*rate+1e-9))
		at := time.Duration(float64(r.At) / speed)
		if t.MaxAt > 0 && at > t.MaxAt {
			break
		}
		for range copies {
			if t.Limit > 0 && len(out) >= t.Limit {
				return out, nil
			}
			out = append(out, Request{At: at, PromptTokens: r.PromptTokens, OutputTokens: r.OutputTokens})
		}
	}
	return out, nil
}
