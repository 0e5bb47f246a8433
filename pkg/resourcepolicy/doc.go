// Package resourcepolicy is the pure ResourcePolicy engine shared by Spillway's
// scheduler plugin, its deletion-cost controller and its node autoscaler.
//
// It holds no client and reads no clock: callers build a Snapshot once per
// cycle from listers (or from a simulation) and ask it questions, passing the
// time when the answer depends on it.
//
//	snap := resourcepolicy.NewSnapshot(policies, nodes, pods)
//	rp, err := snap.Match(pod)          // nil, nil: no policy; *ConflictError: two policies
//	plan, err := snap.Plan(pod, now)    // units the pod may use now, in order
//	for _, u := range plan.Units { ... } // try u.Index; nodes: snap.UnitOf(rp, node) == u.Index
//	plan.Others                          // prefer: nodes outside every unit allowed too
//	plan.Wait                            // non-nil: the pod is held at a unit (until Wait.Until if set)
//	snap.Assume(pod, nodeName)           // count a placement (scheduler Reserve, autoscaler simulation)
//	cost, ok := snap.DeletionCost(pod)   // reverse-order scale-in
//	status := snap.Status(rp)            // pods and requests per unit
//
// Usage can also be kept incrementally (the scheduler plugin does, from pod
// events): CountPod tells what one pod adds to a policy's usage, a
// GroupUsage sums them (Add, Remove), and Snapshot.SetGroupUsage makes a
// snapshot plan from it instead of counting pods. The snapshot counts
// through the same CountPod, so both follow the same rules.
//
// Whether a unit "lacks resources" is left to the caller: a Plan lists every
// unit the pod may use now, in order, stopping at the first unit whose
// whenTryNextUnits policy forbids moving on; the caller uses the first listed
// unit where the pod fits (the scheduler by filtering nodes and scoring by
// unit order, the autoscaler by simulating). A unit is never listed while it
// is at max or maxResources.
//
// whenTryNextUnits, for a unit that is not at max:
//   - LackResourceOrExceedMax (default): later units are listed after it.
//   - ExceedMax: the plan stops at it (Wait set, no deadline).
//   - TimeoutOrExceedMax: the plan stops at it until the deadline, then lists
//     later units. Deadlines are durable: the k-th unit the pod waits at (not
//     counting units at max) has deadline creationTimestamp + k*timeout, so a
//     restarted scheduler takes the same decision.
//   - LackResourceAndNoTerminating: like the default, but the plan stops at
//     the unit while one of its counted pods is terminating.
//
// Counting: a pod counts for unit i of a policy when the policy matches it,
// it is in the same matchLabelKeys group, it is bound (or assumed) to a node
// whose labels match unit i's nodeSelector (the first matching unit wins), it
// has not finished, it carries every podLabels/podAnnotations of the unit,
// it was not created before the policy when ignorePreviousPod is set, and it
// is not terminating when ignoreTerminatingPod is set (the default).
//
// The Snapshot is not safe for concurrent use when Assume or AddNode are
// called; questions alone may run concurrently.
package resourcepolicy
