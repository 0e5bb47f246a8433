// Package manifests checks that the kustomize manifests for a real cluster
// (config/default) render and are accepted by a real kube-apiserver, with a
// server-side dry run, so they cannot rot as the APIs and RBAC change.
package manifests

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spillway-io/spillway/test/integration/framework"
)

func TestDefaultManifestsDryRun(t *testing.T) {
	env := framework.Start(t)
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(env.AssetsDir, "kubectl")
	var rendered, stderr bytes.Buffer
	render := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", "default"))
	render.Stdout, render.Stderr = &rendered, &stderr
	if err := render.Run(); err != nil {
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, stderr.String())
	}
	for _, kind := range []string{"CustomResourceDefinition", "Deployment", "ClusterRole", "Namespace"} {
		if !strings.Contains(rendered.String(), "kind: "+kind+"\n") {
			t.Errorf("rendered manifests hold no %s", kind)
		}
	}
	for _, name := range []string{"name: spillway-manager\n", "name: spillway-gateway\n", "name: spillway-scheduler\n", "name: inferenceservices.spillway.io\n"} {
		if !strings.Contains(rendered.String(), name) {
			t.Errorf("rendered manifests lack %q", strings.TrimSpace(name))
		}
	}
	// A dry run cannot create the namespace the other objects go into.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spillway-system"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	apply := exec.Command(kubectl, "--kubeconfig", env.KubeconfigPath, "apply", "--server-side", "--force-conflicts",
		"--dry-run=server", "-f", "-")
	apply.Stdin = &rendered
	apply.Stdout, apply.Stderr = &out, &out
	if err := apply.Run(); err != nil {
		t.Fatalf("server-side dry run of config/default: %v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), "(server dry run)"); got < 20 {
		t.Errorf("dry run applied %d objects, want all of them:\n%s", got, out.String())
	}
	t.Logf("%s", out.String())
}
