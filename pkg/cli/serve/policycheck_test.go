package serve

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

func TestPolicyWarnings(t *testing.T) {
	o := Options{Name: "qwen-chat", Namespace: "default", Image: "vllm", GPUs: 1, Port: 8080, Shell: "sh",
		Command: "python3 -m vllm.entrypoints.openai.api_server --port 8080"}
	isvc, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	rp := func(name string, sel map[string]string) schedulingv1alpha1.ResourcePolicy {
		return schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: schedulingv1alpha1.ResourcePolicySpec{Selector: sel}}
	}
	for _, tc := range []struct {
		name     string
		policies []schedulingv1alpha1.ResourcePolicy
		want     []string // substrings of the one warning; nil: no warning
	}{
		{"no policy at all", nil, nil},
		{"the seed's selector", []schedulingv1alpha1.ResourcePolicy{rp("qwen-chat", map[string]string{"app": "isvc.qwen-predictor"})},
			[]string{"no ResourcePolicy in namespace default selects the replicas of qwen-chat", "app=isvc.qwen-chat-predictor",
				"qwen-chat selects app=isvc.qwen-predictor", "{app: isvc.qwen-chat-predictor}"}},
		{"matching selector", []schedulingv1alpha1.ResourcePolicy{rp("qwen-chat", map[string]string{"app": "isvc.qwen-chat-predictor"}),
			rp("other", map[string]string{"app": "x"})}, nil},
		{"two match", []schedulingv1alpha1.ResourcePolicy{rp("b", nil), rp("a", map[string]string{"app": "isvc.qwen-chat-predictor"})},
			[]string{"ResourcePolicies a, b in namespace default all select the replicas of qwen-chat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PolicyWarnings(isvc, tc.policies)
			if tc.want == nil {
				if len(got) != 0 {
					t.Fatalf("warnings %q, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("warnings %q, want one", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("warning %q lacks %q", got[0], w)
				}
			}
		})
	}
}
