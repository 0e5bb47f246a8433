// Package inspect holds the commands that look at deployed services:
// `spillway list`, `get NAME` (URL, replicas per node pool, autoscaler
// state, recent events), `delete NAME` and `top` (per service and per pool:
// replicas, GPUs, cost per hour; refreshing, or once with --once). The
// cluster is read into a Snapshot; rendering a Snapshot is pure.
package inspect

import (
	"context"
	"fmt"
	"sort"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// Snapshot is what the commands show, read at one instant.
type Snapshot struct {
	Now      time.Time
	Services []spillwayv1alpha1.InferenceService
	Pools    []spillwayv1alpha1.NodePool
	Nodes    []corev1.Node
	Pods     []corev1.Pod // the services' pods
	HPAs     map[string]autoscalingv2.HorizontalPodAutoscaler
	Events   []corev1.Event
}

// read loads a snapshot of namespace ns ("" = all namespaces).
func read(ctx context.Context, c client.Reader, ns string, now time.Time, withEvents bool) (*Snapshot, error) {
	s := &Snapshot{Now: now, HPAs: map[string]autoscalingv2.HorizontalPodAutoscaler{}}
	var isvcs spillwayv1alpha1.InferenceServiceList
	if err := c.List(ctx, &isvcs, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing InferenceServices: %w", err)
	}
	s.Services = isvcs.Items
	sort.Slice(s.Services, func(i, j int) bool {
		a, b := s.Services[i], s.Services[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	var pools spillwayv1alpha1.NodePoolList
	if err := c.List(ctx, &pools); err == nil { // NodePools are optional (plain clusters)
		s.Pools = pools.Items
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	s.Nodes = nodes.Items
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns), client.HasLabels{"app"}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	for _, p := range pods.Items {
		for _, svc := range s.Services {
			if p.Namespace == svc.Namespace && p.Labels["app"] == PodApp(svc.Name) {
				s.Pods = append(s.Pods, p)
			}
		}
	}
	var hpas autoscalingv2.HorizontalPodAutoscalerList
	if err := c.List(ctx, &hpas, client.InNamespace(ns)); err == nil {
		for _, h := range hpas.Items {
			s.HPAs[h.Namespace+"/"+h.Name] = h
		}
	}
	if withEvents {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(ns)); err == nil {
			s.Events = evs.Items
		}
	}
	return s, nil
}

// PodApp is the app label of a service's pods (KServe raw deployment).
func PodApp(name string) string { return "isvc." + name + "-predictor" }

// poolOfNode names a node's pool: Spillway's label, else ACK's, else "(none)".
func poolOfNode(n *corev1.Node) string {
	if p := n.Labels[spillwayv1alpha1.LabelNodePool]; p != "" {
		return p
	}
	if p := n.Labels[spillwayv1alpha1.LabelACKNodePoolID]; p != "" {
		return p
	}
	return "(none)"
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PoolCount is a service's replicas on one pool.
type PoolCount struct {
	Pool            string
	Replicas, Ready int
}

// replicasByPool counts the service's live pods per node pool; pods not
// scheduled yet count under "pending".
func (s *Snapshot) replicasByPool(svc *spillwayv1alpha1.InferenceService) []PoolCount {
	poolOf := map[string]string{}
	for i := range s.Nodes {
		poolOf[s.Nodes[i].Name] = poolOfNode(&s.Nodes[i])
	}
	counts := map[string]*PoolCount{}
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Namespace != svc.Namespace || p.Labels["app"] != PodApp(svc.Name) || p.DeletionTimestamp != nil ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pool := "pending"
		if p.Spec.NodeName != "" {
			pool = poolOf[p.Spec.NodeName]
			if pool == "" {
				pool = "(unknown node)"
			}
		}
		c := counts[pool]
		if c == nil {
			c = &PoolCount{Pool: pool}
			counts[pool] = c
		}
		c.Replicas++
		if podReady(p) {
			c.Ready++
		}
	}
	out := make([]PoolCount, 0, len(counts))
	for _, c := range counts {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out
}
