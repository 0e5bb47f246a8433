package localcluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEnsurePKI(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	if err := EnsurePKI(dir, now); err != nil {
		t.Fatal(err)
	}
	load := func(name string) *x509.Certificate {
		t.Helper()
		c, err := readCert(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca, fpCA := load(FileCACert), load(FileFrontProxyCACert)
	roots, fpRoots := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca)
	fpRoots.AddCert(fpCA)
	at := now.Add(time.Minute)

	serving := load(FileServingCert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1", CurrentTime: at}); err != nil {
		t.Errorf("serving cert for 127.0.0.1: %v", err)
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes.default.svc", CurrentTime: at}); err != nil {
		t.Errorf("serving cert for kubernetes.default.svc: %v", err)
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com", CurrentTime: at}); err == nil {
		t.Error("serving cert valid for example.com")
	}
	admin := load(FileAdminCert)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: at}); err != nil {
		t.Errorf("admin client cert: %v", err)
	}
	if diff := cmp.Diff([]string{"system:masters"}, admin.Subject.Organization); diff != "" {
		t.Errorf("admin groups (-want,+got):\n%s", diff)
	}
	proxy := load(FileProxyClientCert)
	if _, err := proxy.Verify(x509.VerifyOptions{Roots: fpRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: at}); err != nil {
		t.Errorf("front-proxy client cert: %v", err)
	}
	if _, err := proxy.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: at}); err == nil {
		t.Error("front-proxy client cert verifies against the cluster CA; it must only verify against the front-proxy CA")
	}
	if proxy.Subject.CommonName != FrontProxyClientName {
		t.Errorf("front-proxy CN = %q", proxy.Subject.CommonName)
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1", CurrentTime: now.Add(-2 * time.Hour)}); err == nil {
		t.Error("serving cert valid before now-1h")
	}

	// A second call keeps the existing files.
	if err := EnsurePKI(dir, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !load(FileCACert).Equal(ca) {
		t.Error("EnsurePKI regenerated an existing CA")
	}
}

func TestComponentsListenOnLoopbackOnly(t *testing.T) {
	c := Config{StateDir: "/s", K8sBinDir: "/k", SpillwayBinDir: "/b", ClusterFile: "/c.yaml", Ports: DefaultPorts()}
	comps := Components(c)
	var names []string
	for _, comp := range comps {
		names = append(names, comp.Name)
		for _, a := range comp.Args {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				t.Errorf("%s: flag %q has no value", comp.Name, a)
				continue
			}
			if !strings.Contains(k, "listen") && !strings.Contains(k, "bind") && !strings.Contains(k, "addr") && !strings.Contains(k, "url") {
				continue
			}
			v = strings.TrimPrefix(strings.TrimPrefix(v, "http://"), "https://")
			host := v
			if h, _, err := net.SplitHostPort(v); err == nil {
				host = h
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				t.Errorf("%s: %s=%s is not a loopback address", comp.Name, k, v)
			}
		}
	}
	want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "spillway-simlet", "spillway-metrics-adapter",
		"spillway-scheduler", "spillway-gateway", "spillway-manager"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("components (-want,+got):\n%s", diff)
	}
}

func TestAPIServerFlags(t *testing.T) {
	c := Config{StateDir: "/s", K8sBinDir: "/k", Ports: DefaultPorts()}
	c.Ports.APIServer = 7443
	c.Ports.EtcdClient = 7379
	args := map[string]string{}
	for _, comp := range Components(c) {
		if comp.Name != "kube-apiserver" {
			continue
		}
		if comp.Binary != "/k/kube-apiserver" {
			t.Errorf("binary %q", comp.Binary)
		}
		for _, a := range comp.Args {
			k, v, _ := strings.Cut(a, "=")
			args[k] = v
		}
	}
	for k, want := range map[string]string{
		"--secure-port":                      "7443",
		"--etcd-servers":                     "http://127.0.0.1:7379",
		"--advertise-address":                "127.0.0.1",
		"--endpoint-reconciler-type":         "none",
		"--enable-aggregator-routing":        "", // the ExternalName Service of the metrics adapter needs service routing
		"--requestheader-allowed-names":      FrontProxyClientName,
		"--requestheader-client-ca-file":     "/s/pki/" + FileFrontProxyCACert,
		"--proxy-client-cert-file":           "/s/pki/" + FileProxyClientCert,
		"--service-account-signing-key-file": "/s/pki/" + FileSAKey,
	} {
		if args[k] != want {
			t.Errorf("%s = %q, want %q", k, args[k], want)
		}
	}
	if !strings.Contains(Kubeconfig(c), "server: https://127.0.0.1:7443") {
		t.Errorf("kubeconfig does not point at the apiserver:\n%s", Kubeconfig(c))
	}
}

func TestDefaultClusterFile(t *testing.T) {
	cf, err := ReadClusterFile(filepath.Join("..", "..", "config", "clusters", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name, Display, Type, Role, PoolID string
		Static, GPUs                      int
	}
	var got []row
	for i := range cf.Pools {
		p := &cf.Pools[i]
		got = append(got, row{p.Name, p.Annotations[AnnotationDisplayName], string(p.Spec.Type), string(p.Spec.Role),
			p.Spec.Labels["alibabacloud.com/nodepool-id"], StaticNodes(p), int(p.Spec.Template.GPUs)})
	}
	want := []row{
		{"default-nodepool", "default-nodepool", "Static", "control", "npdefault", 1, 0},
		{"gpu-v100-edge", "GPU-V100-Edge", "Static", "idc", "npxxxxxx", 1, 1},
		{"gpu-v100-elastic", "GPU-V100-Elastic", "Elastic", "elastic", "npxxxxxy", 0, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pools (-want,+got):\n%s", diff)
	}
	el := cf.Pools[2].Spec
	if *el.MaxSize != 3 || el.Provider.Name != "sim" || el.PricePerHour == nil {
		t.Errorf("elastic pool spec %+v", el)
	}
}

func TestParseClusterFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "# nothing\n", "no NodePool"},
		{"bad name", "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: GPU-V100-Edge}\nspec: {type: Static, role: idc}\n", "display-name"},
		{"wrong kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", "kind NodePool"},
		{"unknown field", "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a}\nspec: {type: Static, role: idc, gpu: 1}\n", "unknown field"},
		{"bad count", "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a, annotations: {spillway.io/static-nodes: x}}\nspec: {type: Static, role: idc}\n", "whole number"},
		{"elastic without provider", "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a}\nspec: {type: Elastic, role: elastic, maxSize: 1}\n", "spec.provider"},
		{"duplicate", "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a}\nspec: {type: Static, role: idc}\n---\napiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a}\nspec: {type: Static, role: idc}\n", "twice"},
		{"bad type", "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a}\nspec: {type: Other, role: idc}\n", "Static or Elastic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClusterFile([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseClusterFile(f *testing.F) {
	f.Add([]byte("apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: a}\nspec: {type: Static, role: idc}\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := ParseClusterFile(data)
		if err == nil && len(cf.Pools) == 0 {
			t.Error("no error and no pools")
		}
	})
}

func componentArgs(t *testing.T, c Config, name string) map[string]string {
	t.Helper()
	for _, comp := range Components(c) {
		if comp.Name == name {
			args := map[string]string{}
			for _, a := range comp.Args {
				k, v, _ := strings.Cut(a, "=")
				args[k] = v
			}
			return args
		}
	}
	t.Fatalf("no component %s", name)
	return nil
}

func TestSpillwayComponentFlags(t *testing.T) {
	c := Config{StateDir: "/s", K8sBinDir: "/k", SpillwayBinDir: "/b", Ports: DefaultPorts()}
	for name, want := range map[string]map[string]string{
		"spillway-gateway": {"--endpoints-from": "pods", "--domain": "example.com", "--listen": "127.0.0.1:18080", "--admin-listen": "127.0.0.1:18081"},
		"spillway-manager": {"--domain": "example.com", "--gateway-url": "http://127.0.0.1:18081/metrics"},
		"spillway-scheduler": {"--config": "/s/scheduler-config.yaml", "--bind-address": "127.0.0.1", "--secure-port": "10359",
			"--kubeconfig": ""},
		"spillway-metrics-adapter": {"--secure-port": "10363", "--bind-address": "127.0.0.1", "--health-addr": "127.0.0.1:10364",
			"--serving-dns-names": "spillway-metrics-adapter.spillway-system.svc", "--cert-dir": "/s/pki/metrics-adapter"},
	} {
		args := componentArgs(t, c, name)
		for k, v := range want {
			if args[k] != v {
				t.Errorf("%s %s = %q, want %q", name, k, args[k], v)
			}
		}
	}
}

func TestWriteSchedulerConfig(t *testing.T) {
	c := Config{StateDir: t.TempDir(), SchedulerConfig: filepath.Join("..", "..", "config", "scheduler", "scheduler-config.yaml")}
	if err := WriteSchedulerConfig(c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.schedulerConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kubeconfig: " + c.KubeconfigPath(), "name: SpillwayResourcePolicy", "schedulerName: default-scheduler", "leaderElect: false"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("scheduler config lacks %q:\n%s", want, b)
		}
	}
	for _, tc := range []struct{ file, content, want string }{
		{"", "", "no scheduler configuration given"},
		{"kube.yaml", "kind: Pod\n", "want KubeSchedulerConfiguration"},
		{"missing.yaml", "-", "reading the scheduler configuration"},
	} {
		bad := c
		if tc.file != "" {
			bad.SchedulerConfig = filepath.Join(c.StateDir, tc.file)
			if tc.content != "-" {
				_ = os.WriteFile(bad.SchedulerConfig, []byte(tc.content), 0o600)
			}
		} else {
			bad.SchedulerConfig = ""
		}
		if err := WriteSchedulerConfig(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.file, err, tc.want)
		}
	}
}

// An https health endpoint is verified with the certificate file the process
// writes as it starts: refused before the file exists, accepted after.
func TestHealthProbeWithProcessCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "kube-scheduler.crt")
	c := Config{}
	url, client := c.healthProbe(Component{Name: "x", HealthURL: srv.URL + "/healthz", HealthCAFile: file}, nil)
	if err := probe(context.Background(), client, url); err == nil {
		t.Fatal("probe succeeded without the certificate file")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	other, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other}), 0o600)
	if err := probe(context.Background(), client, url); err == nil {
		t.Fatal("probe trusted a certificate not in the file")
	}
	_ = os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	if err := probe(context.Background(), client, url); err != nil {
		t.Fatalf("probe with the process's certificate: %v", err)
	}
}

func TestHPASettings(t *testing.T) {
	kcmArgs := func(c Config) []string {
		for _, comp := range Components(c) {
			if comp.Name == "kube-controller-manager" {
				return comp.Args
			}
		}
		t.Fatal("no kube-controller-manager")
		return nil
	}
	base := Config{StateDir: "/s", K8sBinDir: "/k", Ports: DefaultPorts()}
	for _, a := range kcmArgs(base) {
		if strings.HasPrefix(a, "--horizontal-pod-autoscaler") {
			t.Errorf("zero HPASettings gave %s; want the upstream defaults", a)
		}
	}
	base.HPA = HPASettings{SyncPeriod: 5 * time.Second, DownscaleStabilization: 90 * time.Second}
	args := strings.Join(kcmArgs(base), " ")
	for _, want := range []string{"--horizontal-pod-autoscaler-sync-period=5s", "--horizontal-pod-autoscaler-downscale-stabilization=1m30s", "--node-monitor-grace-period=20s"} {
		if !strings.Contains(args, want) {
			t.Errorf("kube-controller-manager args lack %s: %s", want, args)
		}
	}
}
