package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Summary is the report of a run; times are in seconds.
type Summary struct {
	Total        float64           `json:"total"`
	Requests     int               `json:"requests"`
	Responses    int               `json:"responses"`
	Slowest      float64           `json:"slowest"`
	Fastest      float64           `json:"fastest"`
	Average      float64           `json:"average"`
	RequestsSec  float64           `json:"requestsPerSec"`
	TotalBytes   int64             `json:"totalBytes"`
	SizePerReq   int64             `json:"sizePerRequest"`
	Histogram    []Bucket          `json:"histogram"`
	Latency      []Percentile      `json:"latencyPercentiles"`
	StatusCodes  map[int]int       `json:"statusCodes"`
	Errors       map[string]int    `json:"errorsByType"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`

	Streamed     int `json:"streamed"`
	OutputTokens int `json:"outputTokens"`
	// PromptTokens sums the prompt_tokens of the responses that reported usage.
	PromptTokens    int          `json:"promptTokens"`
	OutputTokensSec float64      `json:"outputTokensPerSec"`
	TTFT            []Percentile `json:"ttftPercentiles"`
	TTFTMean        float64      `json:"ttftMean"`
	TPOT            []Percentile `json:"tpotPercentiles"`
	TPOTMean        float64      `json:"tpotMean"`
	// ScheduleLag is how late requests left compared with the trace (replay only).
	ScheduleLag []Percentile `json:"scheduleLagPercentiles,omitempty"`
}

// Bucket is one bar of the latency histogram: Count responses at most Mark seconds.
type Bucket struct {
	Mark  float64 `json:"mark"`
	Count int     `json:"count"`
}

// Percentile is the P-th percentile (nearest rank) in seconds.
type Percentile struct {
	P     float64 `json:"p"`
	Value float64 `json:"value"`
}

var pcts = []float64{10, 25, 50, 75, 90, 95, 99}

// Summarize computes the report of results over a run of wall time. As hey
// does, latency figures cover the requests that got a response (whatever
// its status); requests with no response count only as errors.
func Summarize(results []Result, wall time.Duration) Summary {
	s := Summary{Total: wall.Seconds(), Requests: len(results), StatusCodes: map[int]int{}, Errors: map[string]int{}, ErrorSamples: map[string]string{}}
	var lats, ttfts, tpots, lags []float64
	for _, r := range results {
		if r.ErrType != "" {
			s.Errors[r.ErrType]++
			if _, ok := s.ErrorSamples[r.ErrType]; !ok {
				s.ErrorSamples[r.ErrType] = r.Err
			}
		}
		if r.Scheduled >= 0 {
			lags = append(lags, max(0, (r.Start-r.Scheduled).Seconds()))
		}
		if r.Status == 0 {
			continue
		}
		s.Responses++
		s.StatusCodes[r.Status]++
		s.TotalBytes += r.Bytes
		lats = append(lats, r.Duration.Seconds())
		if r.Streamed {
			s.Streamed++
		}
		if r.ErrType != "" {
			continue
		}
		s.OutputTokens += r.Tokens
		s.PromptTokens += r.PromptTokens
		if r.TTFT > 0 {
			ttfts = append(ttfts, r.TTFT.Seconds())
			if r.Tokens > 1 {
				tpots = append(tpots, (r.Duration-r.TTFT).Seconds()/float64(r.Tokens-1))
			}
		}
	}
	if s.Total > 0 {
		s.RequestsSec = float64(s.Responses) / s.Total
		s.OutputTokensSec = float64(s.OutputTokens) / s.Total
	}
	if s.Responses > 0 {
		s.SizePerReq = s.TotalBytes / int64(s.Responses)
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		s.Fastest, s.Slowest = lats[0], lats[len(lats)-1]
		s.Average = mean(lats)
		s.Histogram = histogram(lats)
	}
	s.Latency = percentiles(lats)
	slices.Sort(ttfts)
	slices.Sort(tpots)
	slices.Sort(lags)
	s.TTFT, s.TTFTMean = percentiles(ttfts), mean(ttfts)
	s.TPOT, s.TPOTMean = percentiles(tpots), mean(tpots)
	s.ScheduleLag = percentiles(lags)
	if len(lags) > 0 {
		s.ScheduleLag = append(s.ScheduleLag, Percentile{P: 100, Value: lags[len(lags)-1]})
	}
	return s
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// percentiles of sorted xs, nearest rank.
func percentiles(sorted []float64) []Percentile {
	if len(sorted) == 0 {
		return nil
	}
	out := make([]Percentile, 0, len(pcts))
	for _, p := range pcts {
		out = append(out, Percentile{P: p, Value: nearestRank(sorted, p)})
	}
	return out
}

func nearestRank(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// histogram of sorted latencies in 10 equal buckets from fastest to slowest (as hey).
func histogram(sorted []float64) []Bucket {
	const n = 10
	lo, hi := sorted[0], sorted[len(sorted)-1]
	step := (hi - lo) / n
	out := make([]Bucket, n+1)
	for i := range out {
		out[i].Mark = lo + step*float64(i)
	}
	out[n].Mark = hi
	b := 0
	for _, v := range sorted {
		for b < n && v > out[b].Mark {
			b++
		}
		out[b].Count++
	}
	return out
}

// WriteText prints the report as hey does, followed by the LLM figures.
func (s Summary) WriteText(w io.Writer) error {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	p("\nSummary:\n")
	p("  Total:\t%4.4f secs\n", s.Total)
	p("  Slowest:\t%4.4f secs\n", s.Slowest)
	p("  Fastest:\t%4.4f secs\n", s.Fastest)
	p("  Average:\t%4.4f secs\n", s.Average)
	p("  Requests/sec:\t%4.4f\n", s.RequestsSec)
	p("  \n  Total data:\t%d bytes\n", s.TotalBytes)
	p("  Size/request:\t%d bytes\n", s.SizePerReq)
	if len(s.Histogram) > 0 {
		p("\nResponse time histogram:\n")
		maxc := 0
		for _, b := range s.Histogram {
			maxc = max(maxc, b.Count)
		}
		for _, b := range s.Histogram {
			bar := 0
			if maxc > 0 {
				bar = b.Count * 40 / maxc
			}
			p("  %4.3f [%d]\t|%s\n", b.Mark, b.Count, strings.Repeat("■", bar))
		}
	}
	if len(s.Latency) > 0 {
		p("\nLatency distribution:\n")
		for _, l := range s.Latency {
			p("  %v%% in %4.4f secs\n", l.P, l.Value)
		}
	}
	p("\nStatus code distribution:\n")
	for _, code := range sortedInts(s.StatusCodes) {
		p("  [%d]\t%d responses\n", code, s.StatusCodes[code])
	}
	p("\nLLM figures (%d of %d responses streamed):\n", s.Streamed, s.Responses)
	p("  Prompt tokens:\t%d (from usage)\n", s.PromptTokens)
	p("  Output tokens:\t%d\n", s.OutputTokens)
	p("  Output tokens/sec:\t%4.4f\n", s.OutputTokensSec)
	p("  TTFT:\tmean %4.4f secs%s\n", s.TTFTMean, fmtPcts(s.TTFT))
	p("  TPOT:\tmean %4.4f secs%s\n", s.TPOTMean, fmtPcts(s.TPOT))
	if len(s.ScheduleLag) > 0 {
		p("  Trace schedule lag:%s\n", fmtPcts(s.ScheduleLag))
	}
	if len(s.Errors) > 0 {
		p("\nError distribution:\n")
		keys := make([]string, 0, len(s.Errors))
		for k := range s.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p("  [%d]\t%s: %s\n", s.Errors[k], k, s.ErrorSamples[k])
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

func fmtPcts(ps []Percentile) string {
	var sb strings.Builder
	for _, p := range ps {
		if p.P == 50 || p.P == 90 || p.P == 99 || p.P == 100 {
			fmt.Fprintf(&sb, ", p%v %4.4f", p.P, p.Value)
		}
	}
	return sb.String()
}

func sortedInts(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
