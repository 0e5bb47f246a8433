package serve

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// PolicyWarnings tells what a user should know about the ResourcePolicies of
// the service's namespace before its replicas are placed: none of them
// selecting the replicas' pods while some exist (the seed's policy selects
// app=isvc.qwen-predictor while KServe names the pods of a service qwen-chat
// isvc.qwen-chat-predictor — without a policy the replicas get no IDC-first
// order and no cloud-first scale-in), or two selecting them (the scheduler
// rejects such pods). It is pure: policies are those of the namespace.
func PolicyWarnings(isvc *spillwayv1alpha1.InferenceService, policies []schedulingv1alpha1.ResourcePolicy) []string {
	if len(policies) == 0 {
		return nil
	}
	dep, err := isvcbuild.MakeDeployment(isvc)
	if err != nil {
		return nil
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)
	var matched, others []string
	for i := range policies {
		p := &policies[i]
		if labels.SelectorFromSet(p.Spec.Selector).Matches(podLabels) {
			matched = append(matched, p.Name)
		} else {
			others = append(others, fmt.Sprintf("%s selects %s", p.Name, selectorString(p.Spec.Selector)))
		}
	}
	slices.Sort(matched)
	slices.Sort(others)
	own := fmt.Sprintf("app=%s", podLabels["app"])
	switch {
	case len(matched) == 0:
		return []string{fmt.Sprintf("warning: no ResourcePolicy in namespace %s selects the replicas of %s (their pods carry %s): %s. "+
			"Without one, replicas are placed by the scheduler alone: no IDC-first order and no cloud-first scale-in. "+
			"Set the policy's spec.selector to {app: %s}.",
			isvc.Namespace, isvc.Name, own, strings.Join(others, "; "), podLabels["app"])}
	case len(matched) > 1:
		return []string{fmt.Sprintf("warning: ResourcePolicies %s in namespace %s all select the replicas of %s (%s); "+
			"the scheduler leaves such pods Pending until only one does.", strings.Join(matched, ", "), isvc.Namespace, isvc.Name, own)}
	}
	return nil
}

func selectorString(sel map[string]string) string {
	if len(sel) == 0 {
		return "every pod"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

// warnPolicies prints PolicyWarnings for isvc. Listing policies is best
// effort: a cluster without the ResourcePolicy CRD, or a user not allowed to
// list them, gets no warning.
func warnPolicies(ctx context.Context, c client.Reader, isvc *spillwayv1alpha1.InferenceService, out io.Writer) {
	var list schedulingv1alpha1.ResourcePolicyList
	if err := c.List(ctx, &list, client.InNamespace(isvc.Namespace)); err != nil {
		return
	}
	for _, w := range PolicyWarnings(isvc, list.Items) {
		fmt.Fprintln(out, w)
	}
}
