package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
)

// BenchmarkProxy measures a non-streamed and a streamed request through the
// gateway against the same request sent straight to the engine.
func BenchmarkProxy(b *testing.B) {
	for _, stream := range []bool{false, true} {
		body := `{"model":"qwen","messages":[{"role":"user","content":"hi"}],"max_tokens":16}`
		name := "plain"
		if stream {
			body = `{"model":"qwen","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":true}`
			name = "stream"
		}
		_, addr, stop, err := enginetest.Start(enginetest.Config{Model: "qwen"})
		if err != nil {
			b.Fatal(err)
		}
		gw := startGateway(b, Options{}, service("qwen-chat", "qwen", addr))
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		for _, tgt := range []struct{ name, url string }{{"direct", "http://" + addr}, {"gateway", gw.URL}} {
			b.Run(name+"/"+tgt.name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := c.Post(tgt.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("status %d", resp.StatusCode)
							return
						}
					}
				})
			})
		}
		b.Cleanup(stop)
	}
}
