// Package nodeautoscaler is the pure planning of Spillway's node autoscaler:
// given an immutable snapshot of pools, nodes, pods and ResourcePolicies at a
// time now, PlanScaleUp decides how many nodes each elastic pool must add so
// that the pending pods fit (simulating them in the order of their policy's
// units, counting nodes already coming and the pods expected on them, never
// exceeding a pool's max or a unit's max), and PlanScaleDown decides which
// nodes of elastic pools are unneeded long enough to be removed. Nothing here
// talks to the API or reads a clock; pkg/controllers/nodepool applies the
// decisions.
package nodeautoscaler
