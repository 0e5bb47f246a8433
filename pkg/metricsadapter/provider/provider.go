// Package provider answers custom.metrics.k8s.io queries from the adapter's
// store: the values of one metric for a named pod or node, or for all pods
// matching a label selector. Values older than the store's staleness bound
// are not served; an object without a fresh value is left out of a list, and
// a query with no fresh value at all is a NotFound with the reason.
package provider

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/utils/clock"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

var (
	podsGR  = schema.GroupResource{Resource: store.Pods}
	nodesGR = schema.GroupResource{Resource: store.Nodes}
)

// values is what the provider reads (the store).
type values interface {
	Get(obj store.Object, metric string, now time.Time) (store.Sample, error)
	Metrics(now time.Time) []store.MetricInfo
}

// objects lists the pods and nodes a selector matches (informer listers).
type objects interface {
	Pods(namespace string, selector labels.Selector) ([]*corev1.Pod, error)
	Nodes(selector labels.Selector) ([]*corev1.Node, error)
}

// Provider implements the custom metrics provider of
// sigs.k8s.io/custom-metrics-apiserver.
type Provider struct {
	values  values
	objects objects
	clock   clock.PassiveClock
}

var _ cmprovider.CustomMetricsProvider = (*Provider)(nil)

// New returns a Provider reading values and resolving selectors with objects.
func New(v values, o objects, c clock.PassiveClock) *Provider {
	return &Provider{values: v, objects: o, clock: c}
}

// GetMetricByName returns the metric of one pod or node.
func (p *Provider) GetMetricByName(_ context.Context, name types.NamespacedName, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	if err := check(info, metricSelector); err != nil {
		return nil, err
	}
	obj := store.Object{Resource: info.GroupResource.Resource, Namespace: name.Namespace, Name: name.Name}
	smp, err := p.values.Get(obj, info.Metric, p.clock.Now())
	if err != nil {
		return nil, notFound(err)
	}
	v := value(obj, info.Metric, smp)
	return &v, nil
}

// GetMetricBySelector returns the metric of every pod (or node) the selector
// matches that has a fresh value.
func (p *Provider) GetMetricBySelector(_ context.Context, namespace string, selector labels.Selector, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	if err := check(info, metricSelector); err != nil {
		return nil, err
	}
	var objs []store.Object
	switch info.GroupResource {
	case podsGR:
		pods, err := p.objects.Pods(namespace, selector)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("listing pods: %w", err))
		}
		for _, pod := range pods {
			objs = append(objs, store.Object{Resource: store.Pods, Namespace: pod.Namespace, Name: pod.Name})
		}
	case nodesGR:
		nodes, err := p.objects.Nodes(selector)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("listing nodes: %w", err))
		}
		for _, n := range nodes {
			objs = append(objs, store.Object{Resource: store.Nodes, Name: n.Name})
		}
	}
	now := p.clock.Now()
	list := &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{}}
	var firstErr error
	for _, obj := range objs {
		smp, err := p.values.Get(obj, info.Metric, now)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		list.Items = append(list.Items, value(obj, info.Metric, smp))
	}
	if len(list.Items) == 0 {
		if firstErr == nil {
			firstErr = fmt.Errorf("no %s match the selector %q", info.GroupResource.Resource, selector)
		}
		return nil, notFound(fmt.Errorf("metric %s for %s in %q: %w", info.Metric, info.GroupResource.Resource, namespace, firstErr))
	}
	return list, nil
}

// ListAllMetrics lists the metrics that have a fresh value now.
func (p *Provider) ListAllMetrics() []cmprovider.CustomMetricInfo {
	ms := p.values.Metrics(p.clock.Now())
	out := make([]cmprovider.CustomMetricInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, cmprovider.CustomMetricInfo{
			GroupResource: schema.GroupResource{Resource: m.Resource},
			Namespaced:    m.Resource == store.Pods,
			Metric:        m.Metric,
		})
	}
	return out
}

func check(info cmprovider.CustomMetricInfo, metricSelector labels.Selector) error {
	if info.GroupResource != podsGR && info.GroupResource != nodesGR {
		return apierrors.NewBadRequest(fmt.Sprintf("metrics are served for pods and nodes, not %s", info.GroupResource))
	}
	if metricSelector != nil && !metricSelector.Empty() {
		return apierrors.NewBadRequest(fmt.Sprintf("metric label selectors are not supported (got %q): the adapter serves one aggregated value per object", metricSelector))
	}
	return nil
}

func notFound(err error) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusNotFound,
		Reason:  metav1.StatusReasonNotFound,
		Message: err.Error(),
	}}
}

func value(obj store.Object, metric string, smp store.Sample) custom_metrics.MetricValue {
	ref := custom_metrics.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: obj.Namespace, Name: obj.Name}
	if obj.Resource == store.Nodes {
		ref.Kind = "Node"
	}
	return custom_metrics.MetricValue{
		DescribedObject: ref,
		Metric:          custom_metrics.MetricIdentifier{Name: metric},
		Timestamp:       metav1.NewTime(smp.Timestamp),
		Value:           quantity(smp.Value),
	}
}

// quantity keeps three decimals (milli-units), as the HPA reads them.
// Values beyond ±1e15 (far past any gauge the adapter serves, and safely
// inside what int64 milli-units hold) are clamped.
func quantity(v float64) resource.Quantity {
	const limit = 1e15
	v = math.Max(-limit, math.Min(limit, v))
	return *resource.NewMilliQuantity(int64(math.Round(v*1000)), resource.DecimalSI)
}
