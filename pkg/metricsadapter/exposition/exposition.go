// Package exposition turns what a target serves in the Prometheus text format
// into per-object custom-metric values: vLLM series (`vllm:*`) from a pod's own
// /metrics, and DCGM series (`DCGM_*`) from a node's GPU exporter, which name
// the pod they belong to in their `namespace`/`pod` labels.
//
// Names: the custom metrics API cannot carry ':' in a metric name, so every
// ':' becomes '_' (`vllm:num_requests_waiting` is served as
// `vllm_num_requests_waiting`); DCGM names are served as they are.
//
// Aggregation: a pod's vLLM series with the same name (one per label set, e.g.
// model_name) are summed; a pod's or node's DCGM series with the same name
// (one per GPU) are averaged, since they are utilisation percentages.
// Histograms and summaries are skipped: an HPA target needs a gauge.
package exposition

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

// Prefixes of the metric families the adapter keeps.
const (
	VLLMPrefix = "vllm:"
	DCGMPrefix = "DCGM_"
)

// Labels a node's DCGM series use to name the pod a GPU is given to.
const (
	LabelNamespace = "namespace"
	LabelPod       = "pod"
)

// MaxBytes is the largest exposition the parser reads.
const MaxBytes = 4 << 20

// ErrTooLarge is returned for an exposition over MaxBytes.
var ErrTooLarge = errors.New("exposition larger than the limit")

// MetricName is the name a Prometheus metric is served under in the custom
// metrics API.
func MetricName(promName string) string { return strings.ReplaceAll(promName, ":", "_") }

// Parse reads a Prometheus text exposition.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	lr := &io.LimitedReader{R: r, N: MaxBytes + 1}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(lr)
	if lr.N <= 0 {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, MaxBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the exposition: %w", err)
	}
	return fams, nil
}

// PodValues extracts the vLLM values of a pod from its own exposition.
func PodValues(pod store.Object, fams map[string]*dto.MetricFamily) []store.Value {
	sums := map[string]float64{}
	for _, name := range sortedNames(fams) {
		if !strings.HasPrefix(name, VLLMPrefix) {
			continue
		}
		served := MetricName(name)
		if _, clash := sums[served]; clash {
			continue // an earlier (sorted) family with the same served name wins
		}
		var sum float64
		n := 0
		for _, m := range fams[name].GetMetric() {
			if v, ok := scalar(fams[name].GetType(), m); ok {
				sum += v
				n++
			}
		}
		if n > 0 {
			sums[served] = sum
		}
	}
	return toValues(map[store.Object]map[string]float64{pod: sums})
}

// NodeValues extracts DCGM values from a node's GPU exporter: series that
// name a pod become that pod's values (averaged over its GPUs); series that
// do not become the node's values (averaged over the node's GPUs).
func NodeValues(node string, fams map[string]*dto.MetricFamily) []store.Value {
	type acc struct {
		sum float64
		n   int
	}
	accs := map[store.Object]map[string]*acc{}
	add := func(obj store.Object, metric string, v float64) {
		m := accs[obj]
		if m == nil {
			m = map[string]*acc{}
			accs[obj] = m
		}
		a := m[metric]
		if a == nil {
			a = &acc{}
			m[metric] = a
		}
		a.sum += v
		a.n++
	}
	nodeObj := store.Object{Resource: store.Nodes, Name: node}
	for _, name := range sortedNames(fams) {
		if !strings.HasPrefix(name, DCGMPrefix) {
			continue
		}
		served := MetricName(name)
		for _, m := range fams[name].GetMetric() {
			v, ok := scalar(fams[name].GetType(), m)
			if !ok {
				continue
			}
			ns, pod := labelValue(m, LabelNamespace), labelValue(m, LabelPod)
			if ns != "" && pod != "" {
				add(store.Object{Resource: store.Pods, Namespace: ns, Name: pod}, served, v)
			} else {
				add(nodeObj, served, v)
			}
		}
	}
	out := map[store.Object]map[string]float64{}
	for obj, ms := range accs {
		out[obj] = map[string]float64{}
		for metric, a := range ms {
			out[obj][metric] = a.sum / float64(a.n)
		}
	}
	return toValues(out)
}

func scalar(t dto.MetricType, m *dto.Metric) (float64, bool) {
	var v float64
	switch t {
	case dto.MetricType_GAUGE:
		v = m.GetGauge().GetValue()
	case dto.MetricType_COUNTER:
		v = m.GetCounter().GetValue()
	case dto.MetricType_UNTYPED:
		v = m.GetUntyped().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sortedNames(fams map[string]*dto.MetricFamily) []string {
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func toValues(m map[store.Object]map[string]float64) []store.Value {
	var out []store.Value
	for obj, ms := range m {
		for metric, v := range ms {
			out = append(out, store.Value{Object: obj, Metric: metric, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Object != b.Object {
			return a.Object.String() < b.Object.String()
		}
		return a.Metric < b.Metric
	})
	return out
}
