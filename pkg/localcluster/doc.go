// Package localcluster runs Spillway's local hybrid cluster: it generates the
// certificates, starts etcd, kube-apiserver (with the aggregation layer),
// kube-controller-manager, the node simulator and Spillway's own binaries as
// detached processes on 127.0.0.1, writes a kubeconfig, keeps logs and pid
// files under a state folder, and reports and stops them (up, status, down).
package localcluster
