package provider

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	clocktesting "k8s.io/utils/clock/testing"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// fakeObjects resolves selectors over a fixed set of pods and nodes.
type fakeObjects struct {
	pods  []*corev1.Pod
	nodes []*corev1.Node
}

func (f fakeObjects) Pods(ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, p := range f.pods {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f fakeObjects) Nodes(sel labels.Selector) ([]*corev1.Node, error) {
	var out []*corev1.Node
	for _, n := range f.nodes {
		if sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n)
		}
	}
	return out, nil
}

func pod(name, app string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}}}
}

func podObj(name string) store.Object {
	return store.Object{Resource: store.Pods, Namespace: "default", Name: name}
}

func setup() (*Provider, *clocktesting.FakeClock) {
	st := store.New(30 * time.Second)
	st.Replace("pod/default/a", t0, []store.Value{{Object: podObj("a"), Metric: "vllm_num_requests_waiting", Value: 2.5}})
	st.Replace("pod/default/b", t0.Add(-20*time.Second), []store.Value{{Object: podObj("b"), Metric: "vllm_num_requests_waiting", Value: 4}})
	st.Replace("node/gpu-1", t0, []store.Value{
		{Object: podObj("a"), Metric: "DCGM_CUSTOM_PROCESS_SM_UTIL", Value: 80},
		{Object: store.Object{Resource: store.Nodes, Name: "gpu-1"}, Metric: "DCGM_FI_DEV_GPU_UTIL", Value: 55},
	})
	objs := fakeObjects{
		pods:  []*corev1.Pod{pod("a", "isvc.qwen-predictor"), pod("b", "isvc.qwen-predictor"), pod("c", "isvc.qwen-predictor"), pod("z", "other")},
		nodes: []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "gpu-1"}}},
	}
	clk := clocktesting.NewFakeClock(t0)
	return New(st, objs, clk), clk
}

func item(kind, ns, name, metric string, milli int64, ts time.Time) custom_metrics.MetricValue {
	return custom_metrics.MetricValue{
		DescribedObject: custom_metrics.ObjectReference{APIVersion: "v1", Kind: kind, Namespace: ns, Name: name},
		Metric:          custom_metrics.MetricIdentifier{Name: metric},
		Timestamp:       metav1.NewTime(ts),
		Value:           *resource.NewMilliQuantity(milli, resource.DecimalSI),
	}
}

var podsInfo = func(metric string) cmprovider.CustomMetricInfo {
	return cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric}
}

func TestGetMetricBySelector(t *testing.T) {
	cases := []struct {
		name     string
		advance  time.Duration
		selector string
		metric   string
		want     []custom_metrics.MetricValue
		wantCode int32
	}{
		{
			name: "fresh values of matching pods; pods without values left out", selector: "app=isvc.qwen-predictor",
			metric: "vllm_num_requests_waiting",
			want: []custom_metrics.MetricValue{
				item("Pod", "default", "a", "vllm_num_requests_waiting", 2500, t0),
				item("Pod", "default", "b", "vllm_num_requests_waiting", 4000, t0.Add(-20*time.Second)),
			},
		},
		{
			name: "stale values are not served", advance: 15 * time.Second, selector: "app=isvc.qwen-predictor",
			metric: "vllm_num_requests_waiting",
			want:   []custom_metrics.MetricValue{item("Pod", "default", "a", "vllm_num_requests_waiting", 2500, t0)},
		},
		{
			name: "all stale is NotFound", advance: time.Minute, selector: "app=isvc.qwen-predictor",
			metric: "vllm_num_requests_waiting", wantCode: http.StatusNotFound,
		},
		{
			name: "DCGM value from the node's exporter", selector: "app=isvc.qwen-predictor",
			metric: "DCGM_CUSTOM_PROCESS_SM_UTIL",
			want:   []custom_metrics.MetricValue{item("Pod", "default", "a", "DCGM_CUSTOM_PROCESS_SM_UTIL", 80000, t0)},
		},
		{name: "no pod matches", selector: "app=nothing", metric: "vllm_num_requests_waiting", wantCode: http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, clk := setup()
			clk.Step(tc.advance)
			sel, err := labels.Parse(tc.selector)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.GetMetricBySelector(context.Background(), "default", sel, podsInfo(tc.metric), labels.Everything())
			if tc.wantCode != 0 {
				var status apierrors.APIStatus
				if !errors.As(err, &status) || status.Status().Code != tc.wantCode {
					t.Fatalf("err = %v, want an API error with code %d", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.Items); diff != "" {
				t.Errorf("items (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestGetMetricByName(t *testing.T) {
	p, clk := setup()
	got, err := p.GetMetricByName(context.Background(), types.NamespacedName{Name: "gpu-1"},
		cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "nodes"}, Metric: "DCGM_FI_DEV_GPU_UTIL"}, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(item("Node", "", "gpu-1", "DCGM_FI_DEV_GPU_UTIL", 55000, t0), *got); diff != "" {
		t.Errorf("node metric (-want,+got):\n%s", diff)
	}
	clk.Step(31 * time.Second)
	_, err = p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "default", Name: "a"}, podsInfo("vllm_num_requests_waiting"), labels.Everything())
	if !apierrors.IsNotFound(err) {
		t.Errorf("stale value: err = %v, want NotFound", err)
	}
}

func TestBadRequests(t *testing.T) {
	p, _ := setup()
	sel := labels.SelectorFromSet(labels.Set{"model_name": "qwen"})
	_, err := p.GetMetricBySelector(context.Background(), "default", labels.Everything(), podsInfo("vllm_num_requests_waiting"), sel)
	if !apierrors.IsBadRequest(err) {
		t.Errorf("metric selector: err = %v, want BadRequest", err)
	}
	_, err = p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "default", Name: "x"},
		cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Group: "apps", Resource: "deployments"}, Namespaced: true, Metric: "m"}, labels.Everything())
	if !apierrors.IsBadRequest(err) {
		t.Errorf("deployments: err = %v, want BadRequest", err)
	}
}

func TestListAllMetrics(t *testing.T) {
	p, _ := setup()
	want := []cmprovider.CustomMetricInfo{
		{GroupResource: schema.GroupResource{Resource: "nodes"}, Metric: "DCGM_FI_DEV_GPU_UTIL"},
		podsInfo("DCGM_CUSTOM_PROCESS_SM_UTIL"),
		podsInfo("vllm_num_requests_waiting"),
	}
	if diff := cmp.Diff(want, p.ListAllMetrics()); diff != "" {
		t.Errorf("ListAllMetrics (-want,+got):\n%s", diff)
	}
}

func TestQuantityClamps(t *testing.T) {
	if q := quantity(1e300); q.Sign() <= 0 {
		t.Errorf("quantity(1e300) = %s, want a large positive value", q.String())
	}
	if q := quantity(0.0004); q.MilliValue() != 0 {
		t.Errorf("quantity(0.0004) = %s, want 0", q.String())
	}
}
