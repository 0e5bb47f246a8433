package llm

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/inferenceservice"
)

// Annotations of an InferenceService that tune its llm autoscaler.
const (
	AnnotationPrefix         = "autoscaling.spillway.io/"
	AnnotationTargetInFlight = AnnotationPrefix + "target-in-flight"
	AnnotationTargetWaiting  = AnnotationPrefix + "target-waiting"
	AnnotationTargetKVCache  = AnnotationPrefix + "target-kv-cache"
	AnnotationStableWindow   = AnnotationPrefix + "stable-window"
	AnnotationPanicWindow    = AnnotationPrefix + "panic-window"
	AnnotationPanicThreshold = AnnotationPrefix + "panic-threshold"
	AnnotationScaleDownDelay = AnnotationPrefix + "scale-down-delay"
)

// Scale metrics that set one of the llm targets from scaleTarget.
const (
	MetricWaiting = "vllm:num_requests_waiting"
	MetricKVCache = "vllm:kv_cache_usage_perc"
)

// targetUtilization is the share of containerConcurrency the in-flight target
// takes when no target is given (Knative's 70 %).
const targetUtilization = 0.7

// SpecFor returns the llm autoscaler spec of isvc: replicas from the
// predictor, the in-flight target from scaleMetric concurrency (or 70 % of
// containerConcurrency), the queue target from scaleMetric
// vllm:num_requests_waiting, the KV target from vllm:kv_cache_usage_perc
// (percent), then the autoscaling.spillway.io/ annotations, which win. Bad
// annotation values are all reported, sorted by annotation.
func SpecFor(isvc *spillwayv1alpha1.InferenceService) (Spec, error) {
	s := DefaultSpec()
	p := &isvc.Spec.Predictor
	s.MinReplicas = inferenceservice.MinReplicas(isvc)
	s.MaxReplicas = inferenceservice.MaxReplicas(isvc)
	if p.ContainerConcurrency > 0 {
		s.TargetInFlight = max(1, targetUtilization*float64(p.ContainerConcurrency))
	}
	if p.ScaleTarget != nil {
		t := float64(*p.ScaleTarget)
		switch p.ScaleMetric {
		case inferenceservice.MetricConcurrency:
			s.TargetInFlight = t
		case MetricWaiting:
			s.TargetWaiting = t
		case MetricKVCache:
			s.TargetKVCache = min(t/100, 1)
		}
	}
	var errs []error
	keys := make([]string, 0, len(isvc.Annotations))
	for k := range isvc.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := s.set(k, isvc.Annotations[k]); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: %w", k, isvc.Annotations[k], err))
		}
	}
	if s.PanicWindow > s.StableWindow {
		errs = append(errs, fmt.Errorf("the panic window %s is longer than the stable window %s", s.PanicWindow, s.StableWindow))
	}
	return s, errors.Join(errs...)
}

var errUnknown = errors.New("unknown autoscaling annotation")

func (s *Spec) set(key, value string) error {
	num := func(lo, hi float64) (float64, error) {
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || !(f >= lo && f <= hi) {
			return 0, fmt.Errorf("want a number in [%g, %g]", lo, hi)
		}
		return f, nil
	}
	dur := func(lo, hi time.Duration) (time.Duration, error) {
		d, err := time.ParseDuration(value)
		if err != nil || d < lo || d > hi {
			return 0, fmt.Errorf("want a duration in [%s, %s] such as 60s", lo, hi)
		}
		return d, nil
	}
	var err error
	switch key {
	case AnnotationTargetInFlight:
		s.TargetInFlight, err = num(0.01, 1e6)
	case AnnotationTargetWaiting:
		s.TargetWaiting, err = num(0, 1e6)
	case AnnotationTargetKVCache:
		s.TargetKVCache, err = num(0, 1)
	case AnnotationStableWindow:
		s.StableWindow, err = dur(6*time.Second, time.Hour)
	case AnnotationPanicWindow:
		s.PanicWindow, err = dur(time.Second, time.Hour)
	case AnnotationPanicThreshold:
		s.PanicThreshold, err = num(1.1, 1000)
	case AnnotationScaleDownDelay:
		s.ScaleDownDelay, err = dur(0, time.Hour)
	default:
		if len(key) > len(AnnotationPrefix) && key[:len(AnnotationPrefix)] == AnnotationPrefix {
			return errUnknown
		}
	}
	return err
}
