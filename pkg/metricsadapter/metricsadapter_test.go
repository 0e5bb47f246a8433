package metricsadapter

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/spillway-io/spillway/pkg/metricsadapter/scrape"
)

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		change  func(c *Config)
		wantErr string
	}{
		"defaults":              {change: func(*Config) {}},
		"negative interval":     {change: func(c *Config) { c.ScrapeInterval = -time.Second }, wantErr: "--scrape-interval must be positive"},
		"timeout over interval": {change: func(c *Config) { c.ScrapeTimeout = time.Minute }, wantErr: "--scrape-timeout must be positive and at most"},
		"staleness too short":   {change: func(c *Config) { c.Staleness = time.Second }, wantErr: "--staleness (1s) must be at least --scrape-interval (5s)"},
		"bad selector":          {change: func(c *Config) { c.PodSelector = "app in (" }, wantErr: "--pod-selector"},
		"zero concurrency":      {change: func(c *Config) { c.ScrapeConcurrency = 0 }, wantErr: "--scrape-concurrency must be at least 1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// staticPods is an indexer-backed lister over fixed pods.
func staticPods(pods ...*corev1.Pod) corev1listers.PodLister {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range pods {
		_ = idx.Add(p)
	}
	return corev1listers.NewPodLister(idx)
}

type staticNodes []*corev1.Node

func (s staticNodes) List(labels.Selector) ([]*corev1.Node, error) { return s, nil }

func TestTargets(t *testing.T) {
	pod := func(name, app, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
		}
	}
	objs := listerObjects{
		pods: staticPods(pod("a", "isvc.q-predictor", "127.0.0.2"), pod("b", "other", "127.0.0.3"), pod("c", "isvc.q-predictor", ""),
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a2", Namespace: "elsewhere", Labels: map[string]string{"app": "isvc.q-predictor"}}}),
		nodes: staticNodes{
			{ObjectMeta: metav1.ObjectMeta{Name: "gpu-1", Annotations: map[string]string{scrape.AnnotationDCGMEndpoint: "http://127.0.0.9:9400/metrics"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "cpu-1"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "bad", Annotations: map[string]string{scrape.AnnotationDCGMEndpoint: "::"}}},
		},
	}
	sel, _ := labels.Parse("app=isvc.q-predictor")
	targets, errs := objs.targets(sel)
	var got []string
	for _, tg := range targets {
		got = append(got, tg.Source+" "+tg.URL)
	}
	want := []string{"pod/default/a http://127.0.0.2:8080/metrics", "node/gpu-1 http://127.0.0.9:9400/metrics"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("targets (-want,+got):\n%s", diff)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "node bad") {
		t.Errorf("errors = %v, want one about node bad", errs)
	}
	pods, err := objs.Pods("default", sel)
	if err != nil || len(pods) != 2 {
		t.Errorf("Pods = %d, %v; want 2", len(pods), err)
	}
}
