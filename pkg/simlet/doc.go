// Package simlet is the node simulator of Spillway's local cluster. It
// registers the nodes of the static pools of a cluster file, keeps every node
// it manages alive with Lease heartbeats and a Ready condition, runs the pods
// bound to those nodes in-process on their own 127.x.y.z address through a
// Runtime (EngineRuntime: the vLLM engine simulator for vLLM command lines,
// with the node's GPU profile; PortRuntime: /health and /metrics on the
// declared ports), reports pod status as a kubelet does (readiness, exits,
// crash-loop back-off, graceful termination), serves per-node DCGM metrics
// with each pod's SM utilisation, and injects faults (kill a node, cut a
// pool's heartbeats).
//
// A node is managed when its spillway.io/nodepool label names a pool of the
// cluster file and its providerID starts with simlet:// (static nodes the
// simlet registers) or spillway-sim:// (nodes of the sim cloud provider).
package simlet
