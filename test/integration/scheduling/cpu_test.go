package scheduling

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-io/spillway/internal/procstat"
)

// cpuTimes reads the CPU time (user+system) of this process and of the
// control plane's etcd and kube-apiserver (found by their executable in
// the assets directory), so a measurement can say where the CPU went.
func cpuTimes() map[string]time.Duration {
	out := map[string]time.Duration{"test process": procCPU("self")}
	assets := ""
	if env != nil {
		assets, _ = filepath.Abs(env.AssetsDir)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		switch base := filepath.Base(exe); base {
		case "etcd", "kube-apiserver", "kube-controller-manager":
			if filepath.Dir(exe) == assets {
				out[base] += procCPU(e.Name())
			}
		}
	}
	return out
}

// procCPU is the CPU time of process pid (0 when it cannot be read).
func procCPU(pid string) time.Duration {
	ticks, err := procstat.CPUTicks(pid)
	if err != nil {
		return 0
	}
	return time.Duration(ticks) * time.Second / procstat.ClockTicks
}

// cpuDelta formats after-before per process.
func cpuDelta(before, after map[string]time.Duration) string {
	var parts []string
	var total time.Duration
	for _, k := range []string{"test process", "kube-apiserver", "etcd", "kube-controller-manager"} {
		d := after[k] - before[k]
		total += d
		parts = append(parts, fmt.Sprintf("%s %.2fs", k, d.Seconds()))
	}
	return fmt.Sprintf("CPU %.2fs (%s)", total.Seconds(), strings.Join(parts, ", "))
}

// settle waits (up to 15s) until the control plane and this process used
// under 5% of a CPU over half a second, after a garbage collection here:
// each measurement then starts from a quiet machine rather than in the
// tail of the previous one's deletions and events.
func settle() {
	runtime.GC()
	deadline := time.Now().Add(15 * time.Second)
	prev := cpuTimes()
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		cur := cpuTimes()
		var used time.Duration
		for k, v := range cur {
			used += v - prev[k]
		}
		prev = cur
		if used < 25*time.Millisecond {
			return
		}
	}
}

// apiRequests reads kube-apiserver's apiserver_request_total, summed by
// verb and resource (with subresource), so a measurement can say which API
// calls it cost.
func apiRequests(ctx context.Context) (map[string]float64, error) {
	raw, err := env.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		out[key] += m.GetCounter().GetValue()
	}
	return out, nil
}

// requestDelta formats the calls made between two apiRequests readings,
// per 1,000 pods, largest first (calls under 1 per 1,000 pods left out).
func requestDelta(before, after map[string]float64, pods int) string {
	type kv struct {
		k string
		v float64
	}
	var d []kv
	for k, v := range after {
		if n := (v - before[k]) * 1000 / float64(pods); n >= 1 {
			d = append(d, kv{k, n})
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i].v > d[j].v })
	parts := make([]string, len(d))
	for i, e := range d {
		parts[i] = fmt.Sprintf("%s %.0f", e.k, e.v)
	}
	return "API calls per 1,000 pods: " + strings.Join(parts, ", ")
}
