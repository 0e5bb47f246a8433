package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/spillway-io/spillway/pkg/engine/perf"
)

// rssMB reads a field (VmRSS, VmHWM) of /proc/self/status in MB.
func rssMB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkConcurrentStreams holds `streams` SSE streams open on one server
// and measures the output tokens per second the process delivers. The GPU
// profile is made very fast so that the process, not the model, is the limit.
// Run with GOMAXPROCS=1 for the one-core figure; clients share the process.
func BenchmarkConcurrentStreams(b *testing.B) {
	const streams, tokens = 2000, 128
	g, _ := perf.LookupGPU("h100")
	g.StepOverhead, g.PerSeqOverhead, g.BandwidthBytesPerSec, g.PrefillTokensPerSec = 10*time.Millisecond, 0, 1e15, 1e9
	cfg := Config{ServedModelNames: []string{"m"}, Engine: perf.Config{GPU: g, Model: perf.ModelForParams(1, ""),
		GPUMemoryUtilization: 0.9, MaxNumSeqs: 4096, MaxModelLen: 2048}, GracePeriod: time.Second}
	s, err := New(cfg, WithLogger(logr.Discard()))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	// SPILLWAY_BENCH_ENGINE_ADDR points the clients at a separate
	// `spillway engine-sim --served-model-name m` process instead, so that its
	// RSS can be read alone.
	if ext := os.Getenv("SPILLWAY_BENCH_ENGINE_ADDR"); ext != "" {
		addr = ext
	}
	url := "http://" + addr + "/v1/chat/completions"
	tr := &http.Transport{MaxIdleConnsPerHost: streams, MaxConnsPerHost: streams}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	body := []byte(fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":%d,"ignore_eos":true,"stream":true}`, tokens))
	var total time.Duration
	var peakOpen int
	for b.Loop() {
		var wg sync.WaitGroup
		var mu sync.Mutex
		open := 0
		var firstErr error
		startAt := time.Now()
		for range streams {
			wg.Go(func() {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				defer resp.Body.Close()
				// A small reader keeps the clients' memory out of the way.
				br := bufio.NewReaderSize(resp.Body, 512)
				n := 0
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						break
					}
					if bytes.HasPrefix(line, []byte(`data: {`)) {
						n++
						if n == 2 {
							mu.Lock()
							open++
							peakOpen = max(peakOpen, open)
							mu.Unlock()
						}
					}
				}
				mu.Lock()
				open--
				if n != tokens+1 && firstErr == nil {
					firstErr = fmt.Errorf("stream got %d chunks, want %d", n, tokens+1)
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		total += time.Since(startAt)
		if firstErr != nil {
			b.Fatal(firstErr)
		}
	}
	b.ReportMetric(float64(streams*tokens*b.N)/total.Seconds(), "tokens/s")
	b.ReportMetric(float64(peakOpen), "peak-open-streams")
	b.ReportMetric(rssMB("VmHWM"), "peak-RSS-MB")
}
