// Package framework starts a real Kubernetes control plane for Spillway's
// integration tests: etcd and kube-apiserver built from source (make k8s),
// run through controller-runtime's envtest, with Spillway's CRDs installed,
// and optionally the real kube-controller-manager. Every integration suite
// uses it; nothing in it fakes the API.
//
//	func TestX(t *testing.T) {
//		env := framework.Start(t, framework.WithControllerManager())
//		... env.Client, env.Clientset, env.Config, env.KubeconfigPath ...
//	}
package framework

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/spillway-io/spillway/apis"
)

// K8sVersion is the Kubernetes version the control plane is built at.
const K8sVersion = "1.37.2"

// Env is a running control plane.
type Env struct {
	// Config is an admin rest config for the apiserver.
	Config *rest.Config
	// Client is a controller-runtime client with Spillway's scheme.
	Client client.Client
	// Clientset is a typed client-go clientset.
	Clientset kubernetes.Interface
	// KubeconfigPath is an admin kubeconfig file, for binaries and kubectl.
	KubeconfigPath string
	// Dir is a scratch folder that lives as long as the Env (logs, kubeconfig).
	Dir string
	// AssetsDir holds the control-plane binaries (etcd, kube-apiserver, ...).
	AssetsDir string

	env  *envtest.Environment
	kcm  *process
	opts options
}

type options struct {
	controllerManager bool
	kcmControllers    string
	kcmArgs           []string
	apiserverArgs     map[string][]string
	crdDirs           []string
}

// Option changes how the control plane starts.
type Option func(*options)

// WithControllerManager also runs the real kube-controller-manager (for
// Deployments, ReplicaSets, garbage collection, the HPA, ...). The node
// lifecycle controller is off, since tests register nodes without kubelets;
// use WithControllers to choose otherwise.
func WithControllerManager(extraArgs ...string) Option {
	return func(o *options) {
		o.controllerManager = true
		o.kcmArgs = append(o.kcmArgs, extraArgs...)
	}
}

// WithControllers sets kube-controller-manager's --controllers value.
func WithControllers(list string) Option {
	return func(o *options) { o.kcmControllers = list }
}

// WithAPIServerArgs appends flags to kube-apiserver (name without dashes ->
// values).
func WithAPIServerArgs(args map[string][]string) Option {
	return func(o *options) {
		if o.apiserverArgs == nil {
			o.apiserverArgs = map[string][]string{}
		}
		for k, v := range args {
			o.apiserverArgs[k] = append(o.apiserverArgs[k], v...)
		}
	}
}

// WithCRDDirs installs the CRDs of these folders as well as Spillway's own.
func WithCRDDirs(dirs ...string) Option {
	return func(o *options) { o.crdDirs = append(o.crdDirs, dirs...) }
}

// Start starts a control plane for one test and stops it when the test ends.
// It skips in -short mode and fails, with the command that fixes it, when the
// control-plane binaries have not been built.
func Start(tb testing.TB, opts ...Option) *Env {
	tb.Helper()
	if testing.Short() {
		tb.Skip("integration test: needs a control plane (run without -short)")
	}
	env, err := Launch(opts...)
	if err != nil {
		tb.Fatalf("starting the control plane: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			env.DumpLogs(tb)
		}
		if err := env.Stop(); err != nil {
			tb.Errorf("stopping the control plane: %v", err)
		}
	})
	return env
}

// Launch starts a control plane; the caller must Stop it. Use it from
// TestMain to share one control plane among a package's tests.
func Launch(opts ...Option) (*Env, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "spillway-it-")
	if err != nil {
		return nil, err
	}
	te := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "config", "crd", "bases")}, o.crdDirs...),
		ErrorIfCRDPathMissing: true,
		Scheme:                apis.NewScheme(),
	}
	api := te.ControlPlane.GetAPIServer()
	api.Configure().Set("advertise-address", "127.0.0.1")
	api.Configure().Set("endpoint-reconciler-type", "none")
	for k, vs := range o.apiserverArgs {
		for _, v := range vs {
			api.Configure().Append(k, v)
		}
	}
	cfg, err := te.Start()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("envtest with binaries from %s: %w", assets, err)
	}
	e := &Env{Config: cfg, Dir: dir, AssetsDir: assets, env: te, opts: o}
	if err := e.finishSetup(); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) finishSetup() error {
	var err error
	if e.Client, err = client.New(e.Config, client.Options{Scheme: e.env.Scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if e.Clientset, err = kubernetes.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	admin, err := e.env.AddUser(envtest.User{Name: "spillway-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("admin user: %w", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	e.KubeconfigPath = filepath.Join(e.Dir, "kubeconfig")
	if err := os.WriteFile(e.KubeconfigPath, kc, 0o600); err != nil {
		return err
	}
	if e.opts.controllerManager {
		if err := e.startControllerManager(); err != nil {
			return fmt.Errorf("kube-controller-manager: %w", err)
		}
	}
	return nil
}

// CertDir is the apiserver's certificate folder (CA, serving and
// service-account keys).
func (e *Env) CertDir() string { return e.env.ControlPlane.APIServer.CertDir }

// Stop stops everything Start started and removes the scratch folder.
func (e *Env) Stop() error {
	var errs []error
	if e.kcm != nil {
		errs = append(errs, e.kcm.stop())
	}
	errs = append(errs, e.env.Stop())
	if os.Getenv("SPILLWAY_KEEP_TEST_DIRS") == "" {
		errs = append(errs, os.RemoveAll(e.Dir))
	}
	return errors.Join(errs...)
}

// DumpLogs writes the tail of the logs of the processes the framework runs.
func (e *Env) DumpLogs(tb testing.TB) {
	tb.Helper()
	if e.kcm != nil {
		tb.Logf("kube-controller-manager log tail:\n%s", e.kcm.tail(60))
	}
}

// GVR is a shorthand for building GroupVersionResources in tests.
func GVR(group, version, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
}

// RepoRoot is the folder holding Spillway's go.mod.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the framework's source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above " + filepath.Dir(file))
		}
		dir = parent
	}
}

// AssetsDir finds the control-plane binaries: $KUBEBUILDER_ASSETS, else
// bin/k8s-v<K8sVersion> in the repository.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s-v"+K8sVersion)
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("control-plane binary %s missing in %s: run `make k8s` first", b, dir)
		}
	}
	return dir, nil
}
