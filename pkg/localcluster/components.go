package localcluster

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"
)

// Ports are the loopback ports of the local cluster.
type Ports struct {
	EtcdClient int
	EtcdPeer   int
	APIServer  int
	KCM        int
	Scheduler  int
	// Spillway's own binaries: metrics/health and serving addresses.
	ManagerMetrics int
	ManagerProbe   int
	GatewayHTTP    int
	GatewayAdmin   int
	SimletMetrics  int
	// MetricsAdapter is the custom-metrics adapter's secure (aggregated API)
	// port, MetricsAdapterHealth its plain /healthz /readyz /metrics port.
	MetricsAdapter       int
	MetricsAdapterHealth int
}

// DefaultPorts are the ports used when none are given.
func DefaultPorts() Ports {
	return Ports{
		EtcdClient: 23790, EtcdPeer: 23800, APIServer: 16443, KCM: 10357, Scheduler: 10359,
		ManagerMetrics: 10360, ManagerProbe: 10362, GatewayHTTP: 18080, GatewayAdmin: 18081,
		SimletMetrics: 10361, MetricsAdapter: 10363, MetricsAdapterHealth: 10364,
	}
}

// Config is what a local cluster is made of.
type Config struct {
	// StateDir holds pki/, logs/, etcd data, the kubeconfig and pid files.
	StateDir string
	// K8sBinDir holds etcd, kube-apiserver, kube-controller-manager.
	K8sBinDir string
	// SpillwayBinDir holds Spillway's built binaries.
	SpillwayBinDir string
	// ClusterFile is the cluster file given to the node simulator.
	ClusterFile string
	// CRDDir holds the CRDs installed once kube-apiserver is ready.
	CRDDir string
	// SchedulerConfig is the KubeSchedulerConfiguration of spillway-scheduler
	// (config/scheduler/scheduler-config.yaml: the default profile with the
	// SpillwayResourcePolicy plugin); up writes a copy with the kubeconfig
	// into the state folder.
	SchedulerConfig string
	Ports           Ports
	// HPA tunes kube-controller-manager's HorizontalPodAutoscaler controller
	// (zero values: the upstream defaults, 15s and 5m).
	HPA HPASettings
}

// HPASettings are the HPA controller's timings.
type HPASettings struct {
	// SyncPeriod is --horizontal-pod-autoscaler-sync-period.
	SyncPeriod time.Duration
	// DownscaleStabilization is --horizontal-pod-autoscaler-downscale-stabilization.
	DownscaleStabilization time.Duration
}

// args are the kube-controller-manager flags of s.
func (s HPASettings) args() []string {
	var a []string
	if s.SyncPeriod > 0 {
		a = append(a, "--horizontal-pod-autoscaler-sync-period="+s.SyncPeriod.String())
	}
	if s.DownscaleStabilization > 0 {
		a = append(a, "--horizontal-pod-autoscaler-downscale-stabilization="+s.DownscaleStabilization.String())
	}
	return a
}

// Domain is the domain of InferenceService hosts in the local cluster:
// {name}-{namespace}.example.com, as in the seed.
const Domain = "example.com"

// MetricsAdapterNamespace and MetricsAdapterService name the ExternalName
// Service the custom.metrics.k8s.io APIServices point at (see
// docs/metrics-adapter.md: loopback Endpoints are refused).
const (
	MetricsAdapterNamespace = "spillway-system"
	MetricsAdapterService   = "spillway-metrics-adapter"
)

// schedulerConfigPath is the scheduler configuration written by up.
func (c Config) schedulerConfigPath() string {
	return filepath.Join(c.StateDir, "scheduler-config.yaml")
}

// metricsAdapterCertDir holds the adapter's self-signed serving certificate.
func (c Config) metricsAdapterCertDir() string { return c.pki("metrics-adapter") }

// schedulerCertDir holds spillway-scheduler's self-signed serving certificate.
func (c Config) schedulerCertDir() string { return c.pki("scheduler") }

// Paths under the state folder.
func (c Config) pki(name string) string { return filepath.Join(c.StateDir, "pki", name) }

// KubeconfigPath is the admin kubeconfig written by up.
func (c Config) KubeconfigPath() string { return filepath.Join(c.StateDir, "kubeconfig") }

// LogDir holds one log file per process.
func (c Config) LogDir() string { return filepath.Join(c.StateDir, "logs") }

// APIServerURL is the loopback URL of kube-apiserver.
func (c Config) APIServerURL() string { return "https://127.0.0.1:" + strconv.Itoa(c.Ports.APIServer) }

// Component is one process of the local cluster.
type Component struct {
	// Name is the process name (log file, pid file).
	Name string
	// Binary is the executable path.
	Binary string
	// Args are its flags.
	Args []string
	// Optional components are skipped when their binary is missing (for
	// binaries still being written).
	Optional bool
	// HealthURL, if set, is polled until it answers 200 before the next
	// component starts.
	HealthURL string
	// HealthCAFile, for an https HealthURL, is the PEM file (written by the
	// process itself) whose certificates verify it.
	HealthCAFile string
	// Before runs before the process starts (e.g. writes its configuration).
	Before func(Config) error `json:"-"`
	// After runs once the process is healthy (e.g. registers it).
	After func(context.Context, Config, io.Writer) error `json:"-"`
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// Components lists the processes of the local cluster in start order. Adding a
// process is one entry here.
func Components(c Config) []Component {
	p := c.Ports
	k8s := func(b string) string { return filepath.Join(c.K8sBinDir, b) }
	sw := func(b string) string { return filepath.Join(c.SpillwayBinDir, b) }
	kc := c.KubeconfigPath()
	return []Component{
		{
			Name: "etcd", Binary: k8s("etcd"),
			Args: []string{
				"--name=spillway-local",
				"--data-dir=" + filepath.Join(c.StateDir, "etcd"),
				"--listen-client-urls=http://" + addr(p.EtcdClient),
				"--advertise-client-urls=http://" + addr(p.EtcdClient),
				"--listen-peer-urls=http://" + addr(p.EtcdPeer),
				"--initial-advertise-peer-urls=http://" + addr(p.EtcdPeer),
				"--initial-cluster=spillway-local=http://" + addr(p.EtcdPeer),
				"--unsafe-no-fsync=true",
				"--log-level=warn",
			},
			HealthURL: "http://" + addr(p.EtcdClient) + "/health",
		},
		{
			Name: "kube-apiserver", Binary: k8s("kube-apiserver"),
			Args: []string{
				"--etcd-servers=http://" + addr(p.EtcdClient),
				"--bind-address=127.0.0.1",
				"--advertise-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(p.APIServer),
				"--endpoint-reconciler-type=none",
				"--service-cluster-ip-range=10.0.0.0/24",
				"--allow-privileged=true",
				"--authorization-mode=RBAC",
				"--client-ca-file=" + c.pki(FileCACert),
				"--tls-cert-file=" + c.pki(FileServingCert),
				"--tls-private-key-file=" + c.pki(FileServingKey),
				"--kubelet-client-certificate=" + c.pki(FileAdminCert),
				"--kubelet-client-key=" + c.pki(FileAdminKey),
				"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
				"--service-account-key-file=" + c.pki(FileSAPub),
				"--service-account-signing-key-file=" + c.pki(FileSAKey),
				"--requestheader-client-ca-file=" + c.pki(FileFrontProxyCACert),
				"--requestheader-allowed-names=" + FrontProxyClientName,
				"--requestheader-extra-headers-prefix=X-Remote-Extra-",
				"--requestheader-group-headers=X-Remote-Group",
				"--requestheader-username-headers=X-Remote-User",
				"--proxy-client-cert-file=" + c.pki(FileProxyClientCert),
				"--proxy-client-key-file=" + c.pki(FileProxyClientKey),
				// No --enable-aggregator-routing: the metrics adapter's
				// APIService goes through an ExternalName Service of
				// localhost, which only the default service routing follows.
			},
			After: func(ctx context.Context, c Config, out io.Writer) error { return Bootstrap(ctx, c, c.CRDDir, out) },
		},
		{
			Name: "kube-controller-manager", Binary: k8s("kube-controller-manager"),
			Args: append([]string{
				"--kubeconfig=" + kc,
				"--authentication-kubeconfig=" + kc,
				"--authorization-kubeconfig=" + kc,
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(p.KCM),
				// The endpoint controllers are off: pods run on 127.x addresses, which
				// Endpoints and EndpointSlices refuse (the gateway reads pods instead).
				"--controllers=*,-endpoint,-endpointslice,-endpointslicemirroring",
				"--leader-elect=false",
				"--root-ca-file=" + c.pki(FileCACert),
				"--service-account-private-key-file=" + c.pki(FileSAKey),
				"--use-service-account-credentials=true",
				"--cluster-signing-cert-file=" + c.pki(FileCACert),
				"--cluster-signing-key-file=" + c.pki(FileCAKey),
				"--node-monitor-grace-period=20s",
			}, c.HPA.args()...),
		},
		{
			Name: "spillway-simlet", Binary: sw("spillway-simlet"),
			Args: []string{
				"--kubeconfig=" + kc,
				"--cluster-file=" + c.ClusterFile,
				"--metrics-bind-address=" + addr(p.SimletMetrics),
			},
			HealthURL: "http://" + addr(p.SimletMetrics) + "/healthz",
		},
		{
			Name: "spillway-metrics-adapter", Binary: sw("spillway-metrics-adapter"), Optional: true,
			Args: []string{
				"--kubeconfig=" + kc,
				"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(p.MetricsAdapter),
				"--cert-dir=" + c.metricsAdapterCertDir(),
				"--serving-dns-names=" + MetricsAdapterService + "." + MetricsAdapterNamespace + ".svc",
				"--health-addr=" + addr(p.MetricsAdapterHealth),
				"--scrape-interval=2s", "--scrape-timeout=1s",
			},
			HealthURL: "http://" + addr(p.MetricsAdapterHealth) + "/readyz",
			After:     RegisterMetricsAdapter,
		},
		{
			Name: "spillway-scheduler", Binary: sw("spillway-scheduler"), Optional: true,
			Args: []string{
				"--config=" + c.schedulerConfigPath(),
				"--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
				"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(p.Scheduler),
				"--cert-dir=" + c.schedulerCertDir(),
			},
			HealthURL:    "https://" + addr(p.Scheduler) + "/healthz",
			HealthCAFile: filepath.Join(c.schedulerCertDir(), "kube-scheduler.crt"),
			Before:       WriteSchedulerConfig,
		},
		{
			Name: "spillway-gateway", Binary: sw("spillway-gateway"), Optional: true,
			Args: []string{
				"--kubeconfig=" + kc, "--listen=" + addr(p.GatewayHTTP), "--admin-listen=" + addr(p.GatewayAdmin),
				// EndpointSlices refuse the pods' 127.x addresses.
				"--endpoints-from=pods", "--domain=" + Domain,
			},
			HealthURL: "http://" + addr(p.GatewayAdmin) + "/healthz",
		},
		{
			Name: "spillway-manager", Binary: sw("spillway-manager"), Optional: true,
			Args: []string{
				"--kubeconfig=" + kc, "--metrics-bind-address=" + addr(p.ManagerMetrics), "--health-probe-bind-address=" + addr(p.ManagerProbe),
				"--domain=" + Domain,
				// The llm autoscaler reads the gateway's in-flight counts.
				"--gateway-url=http://" + addr(p.GatewayAdmin) + "/metrics",
			},
			HealthURL: "http://" + addr(p.ManagerProbe) + "/healthz",
		},
	}
}

// Kubeconfig returns the admin kubeconfig of the local cluster.
func Kubeconfig(c Config) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: spillway-local
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: spillway-admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: spillway-local
  context: {cluster: spillway-local, user: spillway-admin}
current-context: spillway-local
`, c.APIServerURL(), c.pki(FileCACert), c.pki(FileAdminCert), c.pki(FileAdminKey))
}
