package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{name: "help", args: []string{"--help"}, wantCode: 0, wantOut: []string{"Usage: spillway-metrics-adapter", "--scrape-interval", "--staleness", "--secure-port"}},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: 2, wantOut: []string{"unknown flag: --nope", "Usage:"}},
		{name: "bad value", args: []string{"--scrape-interval=soon"}, wantCode: 2, wantOut: []string{"invalid argument \"soon\""}},
		{name: "invalid setting", args: []string{"--staleness=1s"}, wantCode: 2, wantOut: []string{"error: --staleness (1s) must be at least --scrape-interval (5s)", "Usage:"}},
		{name: "stray argument", args: []string{"serve"}, wantCode: 2, wantOut: []string{"unexpected arguments [\"serve\"]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(context.Background(), tc.args, &out); code != tc.wantCode {
				t.Errorf("exit code = %d, want %d; output:\n%s", code, tc.wantCode, out.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%.2000s", w, out.String())
				}
			}
		})
	}
}
