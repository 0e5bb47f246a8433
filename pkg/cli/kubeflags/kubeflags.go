// Package kubeflags holds the connection flags every cluster-facing spillway
// command shares, spelled as kubectl spells them: --kubeconfig, --context,
// -n/--namespace. The namespace defaults to the current context's, else
// "default".
package kubeflags

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spillway-io/spillway/apis"
)

// Flags are the kubectl-style connection flags.
type Flags struct {
	// Kubeconfig is a kubeconfig file; empty uses $KUBECONFIG, then ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context to use; empty uses the current one.
	Context string
	// Namespace overrides the context's namespace.
	Namespace string
}

// AddFlags registers the flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", f.Kubeconfig, "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&f.Context, "context", f.Context, "the kubeconfig context to use (default: the current context)")
	fs.StringVarP(&f.Namespace, "namespace", "n", f.Namespace, "the namespace (default: the context's namespace, else \"default\")")
}

func (f *Flags) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.Kubeconfig != "" {
		rules.ExplicitPath = f.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.Context}
	overrides.Context.Namespace = f.Namespace
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// RESTConfig returns the rest config of the chosen cluster.
func (f *Flags) RESTConfig() (*rest.Config, error) {
	cfg, err := f.clientConfig().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}

// ResolveNamespace returns --namespace, else the context's namespace, else "default".
func (f *Flags) ResolveNamespace() (string, error) {
	if f.Namespace != "" {
		return f.Namespace, nil
	}
	ns, _, err := f.clientConfig().Namespace()
	if err != nil {
		// No kubeconfig at all still has a sensible namespace.
		if clientcmd.IsEmptyConfig(err) {
			return "default", nil
		}
		return "", fmt.Errorf("reading the namespace from kubeconfig: %w", err)
	}
	if ns == "" {
		ns = "default"
	}
	return ns, nil
}

// Client returns a controller-runtime client with Spillway's scheme.
func (f *Flags) Client() (client.Client, error) {
	cfg, err := f.RESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: apis.NewScheme()})
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", cfg.Host, err)
	}
	return c, nil
}

// Clientset returns a typed client-go clientset (events, pods, nodes).
func (f *Flags) Clientset() (kubernetes.Interface, error) {
	cfg, err := f.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
