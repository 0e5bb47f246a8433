package localcluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/localcluster"
)

// seedContainer is the seed's predictor container: vLLM's OpenAI server
// behind sh -c, on port 8080, holding one GPU.
func seedContainer() corev1.Container {
	return corev1.Container{
		Name: "kserve-container", Image: "vllm/vllm-openai:v0.6.3",
		Command: []string{"sh", "-c", "python3 -m vllm.entrypoints.openai.api_server --port 8080 --trust-remote-code " +
			"--served-model-name qwen --model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144"},
		Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")}},
	}
}

const chatBody = `{"model":"qwen","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}`

// chat posts a chat completion to url (with host as the Host header when
// set) and returns the status and body.
func chat(ctx context.Context, url, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(chatBody))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// seedEngine: a pod with the seed's vLLM command line, scheduled by
// spillway-scheduler, runs the engine simulator on its pod IP; the metrics
// adapter serves its DCGM SM utilisation through the aggregation layer; and
// an InferenceService of the same container answers through the gateway.
func seedEngine(ctx context.Context, t *testing.T, c localcluster.Config, cs kubernetes.Interface, rc *rest.Config) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "qwen", Namespace: "default",
			Annotations: map[string]string{"simlet.spillway.io/load-delay": "2s"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{seedContainer()}, TerminationGracePeriodSeconds: ptr.To(int64(5))},
	}
	created := time.Now()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	eventually(t, 60*time.Second, "the vLLM pod scheduled and Ready", func() bool {
		var err error
		p, err = cs.CoreV1().Pods("default").Get(ctx, "qwen", metav1.GetOptions{})
		return err == nil && podReady(p)
	})
	readyAfter := time.Since(created)
	t.Logf("vLLM pod Ready on %s at %s after %s", p.Spec.NodeName, p.Status.PodIP, readyAfter.Round(time.Millisecond))
	if p.Spec.NodeName != "gpu-v100-edge-0" {
		t.Errorf("the GPU pod runs on %q, want the edge pool's GPU node", p.Spec.NodeName)
	}
	if readyAfter < 2*time.Second {
		t.Errorf("Ready %s after creation, before the 2s simulated model load", readyAfter)
	}
	base := "http://" + net.JoinHostPort(p.Status.PodIP, "8080")
	code, body, err := chat(ctx, base, "")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"model":"qwen"`) || !strings.Contains(body, `"completion_tokens":16`) {
		t.Fatalf("chat completion on the pod IP: %d %s %v", code, body, err)
	}

	// The node's DCGM exporter reports the pod; the adapter serves it.
	var last string
	eventually(t, 60*time.Second, "DCGM_CUSTOM_PROCESS_SM_UTIL of the pod through custom.metrics.k8s.io/v1beta1", func() bool {
		// Keep the engine busy so the figure is not 0.
		_, _, _ = chat(ctx, base, "")
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/DCGM_CUSTOM_PROCESS_SM_UTIL").DoRaw(ctx)
		last = fmt.Sprintf("%s %v", b, err)
		var list struct {
			Items []struct {
				DescribedObject struct{ Name string } `json:"describedObject"`
				Value           resource.Quantity     `json:"value"`
			} `json:"items"`
		}
		if err != nil || json.Unmarshal(b, &list) != nil {
			return false
		}
		for _, it := range list.Items {
			if it.DescribedObject.Name == "qwen" && it.Value.MilliValue() > 0 {
				return true
			}
		}
		return false
	})
	t.Logf("custom metrics: %.300s", last)

	// Deleting frees the GPU for the InferenceService.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "qwen", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the vLLM pod gone", func() bool {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "qwen", metav1.GetOptions{})
		return err != nil
	})

	scheme := runtime.NewScheme()
	_ = spillwayv1alpha1.AddToScheme(scheme)
	cl, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	isvc := &spillwayv1alpha1.InferenceService{
		ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat", Namespace: "default"},
		Spec: spillwayv1alpha1.InferenceServiceSpec{Predictor: spillwayv1alpha1.PredictorSpec{
			Containers: []corev1.Container{seedContainer()}, MinReplicas: ptr.To(int32(1)), MaxReplicas: 1,
			AutoscalerClass: spillwayv1alpha1.AutoscalerNone,
			Annotations:     map[string]string{"simlet.spillway.io/load-delay": "1s"},
		}},
	}
	created = time.Now()
	if err := cl.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	gw := "http://127.0.0.1:" + strconv.Itoa(c.Ports.GatewayHTTP)
	eventually(t, 90*time.Second, "the gateway answering for qwen-chat-default."+localcluster.Domain, func() bool {
		code, body, err = chat(ctx, gw, "qwen-chat-default."+localcluster.Domain)
		return err == nil && code == http.StatusOK
	})
	t.Logf("gateway answered %s after the InferenceService was created: %.200s", time.Since(created).Round(time.Millisecond), body)
	if !strings.Contains(body, `"completion_tokens":16`) {
		t.Errorf("gateway answer: %s", body)
	}
}
