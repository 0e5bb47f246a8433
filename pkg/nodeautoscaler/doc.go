// Package nodeautoscaler is the pure planning of Spillway's node autoscaler:
// given an immutable snapshot of pools, nodes, pods and ResourcePolicies at a
// time now, PlanScaleUp decides how many nodes each elastic pool must add so
// that the pending pods fit (simulating them in the order of their policy's
// units, counting nodes already coming and the pods expected on them, never
// exceeding a pool's max or a unit's max), and PlanScaleDown decides which
// nodes of elastic pools are unneeded long enough to be removed. Nothing here
// talks to the API or reads a clock; pkg/controllers/nodepool applies the
// decisions.
//
// ResourcePolicies are applied by pkg/resourcepolicy, the engine the
// scheduler plugin runs: each pending pod's Plan (units in order, unit max
// and maxResources, whenTryNextUnits, required/prefer, podLabels markers,
// ignorePreviousPod, ignoreTerminatingPod, matchLabelKeys groups) decides
// which nodes and pools it may use, and every simulated placement (on a
// usable, coming or new node, the new node added with AddNode) is Assumed
// into the engine's snapshot so the next pod's plan counts it.
package nodeautoscaler
