package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// ServiceMetrics are live figures of one service, from the gateway or the
// engines when reachable.
type ServiceMetrics struct {
	GPUUtil  *float64 // percent, mean over replicas
	Queue    *float64 // requests waiting
	InFlight *float64 // requests running
}

func age(now time.Time, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

func poolsString(pc []PoolCount) string {
	if len(pc) == 0 {
		return "-"
	}
	parts := make([]string, len(pc))
	for i, p := range pc {
		parts[i] = fmt.Sprintf("%s=%d/%d", p.Pool, p.Ready, p.Replicas)
	}
	return strings.Join(parts, ",")
}

func readyString(svc *spillwayv1alpha1.InferenceService) string {
	if c := meta.FindStatusCondition(svc.Status.Conditions, "Ready"); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

// WriteList prints `spillway list`.
func WriteList(w io.Writer, s *Snapshot, allNamespaces bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	if allNamespaces {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tURL\tREADY\tREPLICAS\tDESIRED\tPOOLS (ready/all)\tAGE")
	for i := range s.Services {
		svc := &s.Services[i]
		if allNamespaces {
			fmt.Fprintf(tw, "%s\t", svc.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", svc.Name, orDash(svc.Status.URL), readyString(svc),
			svc.Status.Replicas, svc.Status.DesiredReplicas, poolsString(s.replicasByPool(svc)), age(s.Now, svc.CreationTimestamp.Time))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteGet prints `spillway get NAME`.
func WriteGet(w io.Writer, s *Snapshot, svc *spillwayv1alpha1.InferenceService) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := svc.Spec.Predictor
	fmt.Fprintf(tw, "Name:\t%s\n", svc.Name)
	fmt.Fprintf(tw, "Namespace:\t%s\n", svc.Namespace)
	fmt.Fprintf(tw, "URL:\t%s\n", orDash(svc.Status.URL))
	fmt.Fprintf(tw, "Ready:\t%s\n", readyString(svc))
	if len(p.Containers) > 0 {
		fmt.Fprintf(tw, "Image:\t%s\n", p.Containers[0].Image)
	}
	fmt.Fprintf(tw, "Age:\t%s\n", age(s.Now, svc.CreationTimestamp.Time))
	fmt.Fprintf(tw, "Replicas:\t%d (ready %d, desired %d)\n", svc.Status.Replicas, svc.Status.ReadyReplicas, svc.Status.DesiredReplicas)
	fmt.Fprintln(tw, "Replicas per node pool:")
	pools := s.replicasByPool(svc)
	if len(pools) == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	for _, pc := range pools {
		fmt.Fprintf(tw, "  %s\t%d (ready %d)\n", pc.Pool, pc.Replicas, pc.Ready)
	}
	fmt.Fprintln(tw, "Autoscaler:")
	minR := int32(1)
	if p.MinReplicas != nil {
		minR = *p.MinReplicas
	}
	fmt.Fprintf(tw, "  Class:\t%s\n", orDash(string(p.AutoscalerClass)))
	fmt.Fprintf(tw, "  Min/Max:\t%d/%d\n", minR, max(p.MaxReplicas, minR))
	if p.ScaleMetric != "" && p.ScaleTarget != nil {
		fmt.Fprintf(tw, "  Metric:\t%s target %d per replica\n", p.ScaleMetric, *p.ScaleTarget)
	}
	if h, ok := s.HPAs[svc.Namespace+"/"+svc.Name+"-hpa"]; ok {
		fmt.Fprintf(tw, "  HPA %s:\tcurrent %d, desired %d", h.Name, h.Status.CurrentReplicas, h.Status.DesiredReplicas)
		for _, m := range h.Status.CurrentMetrics {
			if m.Pods != nil && m.Pods.Current.AverageValue != nil {
				fmt.Fprintf(tw, ", %s now %s", m.Pods.Metric.Name, m.Pods.Current.AverageValue.String())
			}
		}
		fmt.Fprintln(tw)
	}
	for _, c := range svc.Status.Conditions {
		if c.Type == "AutoscalerReady" {
			fmt.Fprintf(tw, "  State:\t%s %s: %s\n", c.Status, c.Reason, c.Message)
		}
	}
	fmt.Fprintln(tw, "Conditions:")
	for _, c := range svc.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	fmt.Fprintln(tw, "Events:")
	evs := serviceEvents(s.Events, svc)
	if len(evs) == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	for _, e := range evs {
		fmt.Fprintf(tw, "  %s ago\t%s\t%s/%s\t%s\t%s\n", age(s.Now, eventTime(e)), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
	}
	return tw.Flush()
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// serviceEvents are the newest 15 events of the service, its Deployment,
// HPA and pods, oldest first.
func serviceEvents(all []corev1.Event, svc *spillwayv1alpha1.InferenceService) []corev1.Event {
	prefix := svc.Name + "-predictor"
	var out []corev1.Event
	for _, e := range all {
		o := e.InvolvedObject
		if e.Namespace != svc.Namespace {
			continue
		}
		if o.Name == svc.Name || o.Name == svc.Name+"-hpa" || strings.HasPrefix(o.Name, prefix) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Before(eventTime(out[j])) })
	if len(out) > 15 {
		out = out[len(out)-15:]
	}
	return out
}

// PoolUsage is one node pool's row of `spillway top`.
type PoolUsage struct {
	Pool           string
	Role           string
	Nodes, Ready   int
	GPUs, GPUsUsed int64
	PricePerHour   float64 // per node
	CostPerHour    float64
	// Live figures over the services' replicas on the pool.
	PoolLive
}

// Pools sums nodes, GPUs (allocatable and requested by running pods) and
// cost per pool. Pure.
func (s *Snapshot) PoolUsage(allPods []corev1.Pod) []PoolUsage {
	rows := map[string]*PoolUsage{}
	get := func(name string) *PoolUsage {
		if rows[name] == nil {
			rows[name] = &PoolUsage{Pool: name, Role: "-"}
		}
		return rows[name]
	}
	for _, p := range s.Pools {
		r := get(p.Name)
		r.Role = string(p.Spec.Role)
		if p.Spec.PricePerHour != nil {
			r.PricePerHour = p.Spec.PricePerHour.AsApproximateFloat64()
		}
	}
	poolOf := map[string]string{}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		name := poolOfNode(n)
		poolOf[n.Name] = name
		r := get(name)
		r.Nodes++
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				r.Ready++
			}
		}
		if q, ok := n.Status.Allocatable[spillwayv1alpha1.ResourceGPU]; ok {
			r.GPUs += q.Value()
		}
	}
	for _, p := range allPods {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range p.Spec.Containers {
			if q, ok := c.Resources.Requests[spillwayv1alpha1.ResourceGPU]; ok {
				get(poolOf[p.Spec.NodeName]).GPUsUsed += q.Value()
			}
		}
	}
	out := make([]PoolUsage, 0, len(rows))
	for _, r := range rows {
		r.CostPerHour = r.PricePerHour * float64(r.Nodes)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out
}

func fmtOpt(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// WriteTop prints one screen of `spillway top`: per service and per pool,
// then the notes on sources that could not be read. Pure.
func WriteTop(w io.Writer, s *Snapshot, pools []PoolUsage, metrics map[string]ServiceMetrics, notes []string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "spillway top — %s\n\n", s.Now.UTC().Format(time.RFC3339))
	fmt.Fprintln(tw, "SERVICE\tREADY/REPLICAS\tDESIRED\tPOOLS (ready/all)\tGPU UTIL\tQUEUE\tIN-FLIGHT")
	for i := range s.Services {
		svc := &s.Services[i]
		m := metrics[svc.Namespace+"/"+svc.Name]
		fmt.Fprintf(tw, "%s/%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\n", svc.Namespace, svc.Name, svc.Status.ReadyReplicas, svc.Status.Replicas,
			svc.Status.DesiredReplicas, poolsString(s.replicasByPool(svc)), fmtOpt(m.GPUUtil, "%.0f%%"), fmtOpt(m.Queue, "%.0f"), fmtOpt(m.InFlight, "%.0f"))
	}
	if len(s.Services) == 0 {
		fmt.Fprintln(tw, "(no InferenceServices)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "POOL\tROLE\tNODES (ready/all)\tGPUS (used/all)\tREPLICAS\tGPU UTIL\tQUEUE\tIN-FLIGHT\tPRICE/H\tCOST/H")
	total := 0.0
	for _, p := range pools {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d/%d\t%d\t%s\t%s\t%s\t%.2f\t%.2f\n", p.Pool, p.Role, p.Ready, p.Nodes, p.GPUsUsed, p.GPUs,
			p.Replicas, fmtOpt(p.GPUUtil, "%.0f%%"), fmtOpt(p.Queue, "%.0f"), fmtOpt(p.InFlight, "%.0f"), p.PricePerHour, p.CostPerHour)
		total += p.CostPerHour
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t\t\t\t\t\t\t%.2f\n", total)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintf(w, "note: %s\n", n); err != nil {
			return err
		}
	}
	return nil
}

// WithLive adds the live per-pool figures to the pools' rows; pools with
// replicas but no row (no nodes, no NodePool: "(unknown node)") get one. Pure.
func WithLive(pools []PoolUsage, live map[string]PoolLive) []PoolUsage {
	out := make([]PoolUsage, 0, len(pools))
	seen := map[string]bool{}
	for _, p := range pools {
		p.PoolLive = live[p.Pool]
		seen[p.Pool] = true
		out = append(out, p)
	}
	for name, l := range live {
		if !seen[name] && l.Replicas > 0 {
			out = append(out, PoolUsage{Pool: name, Role: "-", PoolLive: l})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out
}
