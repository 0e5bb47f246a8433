package scrape

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

type podBuilder struct{ p corev1.Pod }

func makePod(name string) *podBuilder {
	return &podBuilder{p: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.7"},
	}}
}
func (b *podBuilder) Port(name string, port int32) *podBuilder {
	b.p.Spec.Containers[0].Ports = append(b.p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: name, ContainerPort: port})
	return b
}
func (b *podBuilder) Annotation(k, v string) *podBuilder {
	if b.p.Annotations == nil {
		b.p.Annotations = map[string]string{}
	}
	b.p.Annotations[k] = v
	return b
}
func (b *podBuilder) Phase(p corev1.PodPhase) *podBuilder { b.p.Status.Phase = p; return b }
func (b *podBuilder) Obj() *corev1.Pod                    { return &b.p }

func TestPodTarget(t *testing.T) {
	obj := store.Object{Resource: store.Pods, Namespace: "default", Name: "p"}
	cases := []struct {
		name    string
		pod     *corev1.Pod
		want    Target
		wantOK  bool
		wantErr bool
	}{
		{name: "named http port wins", pod: makePod("p").Port("grpc", 9000).Port("http", 8080).Obj(), wantOK: true,
			want: Target{Source: "pod/default/p", Kind: KindPod, URL: "http://127.0.0.7:8080/metrics", Object: obj}},
		{name: "first port", pod: makePod("p").Port("", 8000).Port("", 9000).Obj(), wantOK: true,
			want: Target{Source: "pod/default/p", Kind: KindPod, URL: "http://127.0.0.7:8000/metrics", Object: obj}},
		{name: "annotations", pod: makePod("p").Port("http", 8080).Annotation(AnnotationMetricsPort, "9090").Annotation(AnnotationMetricsPath, "/stats").Obj(), wantOK: true,
			want: Target{Source: "pod/default/p", Kind: KindPod, URL: "http://127.0.0.7:9090/stats", Object: obj}},
		{name: "no port", pod: makePod("p").Obj()},
		{name: "pending", pod: makePod("p").Port("http", 8080).Phase(corev1.PodPending).Obj()},
		{name: "bad port annotation", pod: makePod("p").Annotation(AnnotationMetricsPort, "http").Obj(), wantErr: true},
		{name: "bad path annotation", pod: makePod("p").Port("http", 1).Annotation(AnnotationMetricsPath, "metrics").Obj(), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := PodTarget(tc.pod)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PodTarget (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestNodeTarget(t *testing.T) {
	node := func(ann map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-1", Annotations: ann}}
	}
	got, ok, err := NodeTarget(node(map[string]string{AnnotationDCGMEndpoint: "http://127.0.0.9:9400/metrics"}))
	want := Target{Source: "node/gpu-1", Kind: KindNode, URL: "http://127.0.0.9:9400/metrics", Object: store.Object{Resource: store.Nodes, Name: "gpu-1"}}
	if err != nil || !ok {
		t.Fatalf("NodeTarget = %v, %v", ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NodeTarget (-want,+got):\n%s", diff)
	}
	if _, ok, err := NodeTarget(node(nil)); ok || err != nil {
		t.Errorf("node without annotation: ok=%v err=%v, want no target", ok, err)
	}
	if _, _, err := NodeTarget(node(map[string]string{AnnotationDCGMEndpoint: "127.0.0.9:9400"})); err == nil {
		t.Error("node with a bad URL: want an error")
	}
}
