package trace

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSample(t *testing.T) {
	f, err := os.Open("testdata/azure_conv_sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reqs, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 40 {
		t.Fatalf("got %d requests, want 40", len(reqs))
	}
	// First rows: 18:15:46.6805900,374,44 / 18:15:50.9951690,396,109.
	want := []Request{{At: 0, PromptTokens: 374, OutputTokens: 44}, {At: 4314579 * time.Microsecond, PromptTokens: 396, OutputTokens: 109}}
	if diff := cmp.Diff(want, reqs[:2]); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
	for i := 1; i < len(reqs); i++ {
		if reqs[i].At < reqs[i-1].At {
			t.Fatalf("request %d is before request %d", i, i-1)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "trace is empty"},
		{"no column", "TIMESTAMP,ContextTokens\n", "no column GeneratedTokens"},
		{"no rows", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"},
		{"bad time", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", "line 2: TIMESTAMP"},
		{"bad tokens", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,x,2\n", "ContextTokens: \"x\""},
		{"negative", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1,-2\n", "out of range"},
		{"short row", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1\n", "columns"},
		{"out of order", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:47,1,1\n2023-11-16 18:15:46,1,1\n", "before the previous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTransform(t *testing.T) {
	reqs := []Request{
		{At: 0, PromptTokens: 1, OutputTokens: 1},
		{At: 2 * time.Second, PromptTokens: 2, OutputTokens: 2},
		{At: 4 * time.Second, PromptTokens: 3, OutputTokens: 3},
		{At: 6 * time.Second, PromptTokens: 4, OutputTokens: 4},
	}
	cases := []struct {
		name string
		tr   Transform
		want []Request
	}{
		{"identity", Transform{}, reqs},
		{"speed-up 2", Transform{SpeedUp: 2}, []Request{
			{At: 0, PromptTokens: 1, OutputTokens: 1}, {At: time.Second, PromptTokens: 2, OutputTokens: 2},
			{At: 2 * time.Second, PromptTokens: 3, OutputTokens: 3}, {At: 3 * time.Second, PromptTokens: 4, OutputTokens: 4}}},
		{"half rate", Transform{RateScale: 0.5}, []Request{
			{At: 2 * time.Second, PromptTokens: 2, OutputTokens: 2}, {At: 6 * time.Second, PromptTokens: 4, OutputTokens: 4}}},
		{"1.5x rate", Transform{RateScale: 1.5}, []Request{
			{At: 0, PromptTokens: 1, OutputTokens: 1}, {At: 2 * time.Second, PromptTokens: 2, OutputTokens: 2},
			{At: 2 * time.Second, PromptTokens: 2, OutputTokens: 2}, {At: 4 * time.Second, PromptTokens: 3, OutputTokens: 3},
			{At: 6 * time.Second, PromptTokens: 4, OutputTokens: 4}, {At: 6 * time.Second, PromptTokens: 4, OutputTokens: 4}}},
		{"limit", Transform{Limit: 2}, reqs[:2]},
		{"max at", Transform{MaxAt: 3 * time.Second}, reqs[:2]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.tr.Apply(reqs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want,+got):\n%s", diff)
			}
		})
	}
	for _, bad := range []Transform{{SpeedUp: -1}, {RateScale: -2}, {RateScale: 1000}} {
		if _, err := bad.Apply(reqs); err == nil {
			t.Errorf("Apply(%+v): no error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n")
	f.Add("GeneratedTokens,TIMESTAMP,ContextTokens\n1,2023-11-16 18:15:46,2\n")
	f.Add("TIMESTAMP,ContextTokens,GeneratedTokens\n\"a\nb\",1,1")
	f.Fuzz(func(t *testing.T, in string) {
		reqs, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for i, r := range reqs {
			if r.PromptTokens < 0 || r.OutputTokens < 0 || r.At < 0 || (i > 0 && r.At < reqs[i-1].At) {
				t.Fatalf("bad request %d: %+v", i, r)
			}
		}
	})
}
