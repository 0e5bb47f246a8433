package scrape

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

// Annotations that tell the adapter where to scrape.
const (
	// AnnotationDCGMEndpoint on a Node is the URL of the node's GPU metrics
	// (DCGM exporter format), e.g. http://127.0.0.5:9400/metrics. The node
	// simulator publishes it; a real cluster sets it per node (or runs the
	// DCGM exporter at the node's address and sets it from a DaemonSet).
	AnnotationDCGMEndpoint = "spillway.io/dcgm-endpoint"
	// AnnotationMetricsPort on a Pod overrides the port of its /metrics.
	AnnotationMetricsPort = "spillway.io/metrics-port"
	// AnnotationMetricsPath on a Pod overrides the path (default /metrics).
	AnnotationMetricsPath = "spillway.io/metrics-path"
)

// Kind is what a target reports on.
type Kind string

// Kinds of target.
const (
	KindPod  Kind = "pod"
	KindNode Kind = "node"
)

// Target is one endpoint to scrape.
type Target struct {
	// Source names the target in the store and in the adapter's own metrics:
	// pod/<namespace>/<name> or node/<name>.
	Source string
	Kind   Kind
	URL    string
	// Object is the pod or node the target belongs to.
	Object store.Object
}

// PodTarget is where a pod serves its vLLM metrics: http://<podIP>:<port>
// <path>, the port being the annotation's, else the container port named
// "http" or "metrics", else the first container port. Pods without an IP,
// not running, or being deleted have no target.
func PodTarget(pod *corev1.Pod) (Target, bool, error) {
	if pod.Status.PodIP == "" || pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
		return Target{}, false, nil
	}
	port, err := podPort(pod)
	if err != nil || port == 0 {
		return Target{}, false, err
	}
	path := "/metrics"
	if p := pod.Annotations[AnnotationMetricsPath]; p != "" {
		if p[0] != '/' {
			return Target{}, false, fmt.Errorf("pod %s/%s: annotation %s=%q must start with /", pod.Namespace, pod.Name, AnnotationMetricsPath, p)
		}
		path = p
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))), Path: path}
	return Target{
		Source: "pod/" + pod.Namespace + "/" + pod.Name,
		Kind:   KindPod,
		URL:    u.String(),
		Object: store.Object{Resource: store.Pods, Namespace: pod.Namespace, Name: pod.Name},
	}, true, nil
}

func podPort(pod *corev1.Pod) (int32, error) {
	if s, ok := pod.Annotations[AnnotationMetricsPort]; ok {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 1 || p > 65535 {
			return 0, fmt.Errorf("pod %s/%s: annotation %s=%q is not a port number", pod.Namespace, pod.Name, AnnotationMetricsPort, s)
		}
		return int32(p), nil
	}
	var first int32
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "http" || p.Name == "metrics" {
				return p.ContainerPort, nil
			}
			if first == 0 {
				first = p.ContainerPort
			}
		}
	}
	return first, nil
}

// NodeTarget is where a node serves its GPU metrics: the URL in its
// AnnotationDCGMEndpoint. Nodes without the annotation have no target.
func NodeTarget(node *corev1.Node) (Target, bool, error) {
	raw, ok := node.Annotations[AnnotationDCGMEndpoint]
	if !ok {
		return Target{}, false, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Target{}, false, fmt.Errorf("node %s: annotation %s=%q is not an http(s) URL", node.Name, AnnotationDCGMEndpoint, raw)
	}
	return Target{
		Source: "node/" + node.Name,
		Kind:   KindNode,
		URL:    u.String(),
		Object: store.Object{Resource: store.Nodes, Name: node.Name},
	}, true, nil
}
