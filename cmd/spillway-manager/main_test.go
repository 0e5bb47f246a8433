package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/test/integration/framework"
)

// TestMain lets a test run the test binary as spillway-manager itself
// (SPILLWAY_MANAGER_RUN_MAIN=1), to send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("SPILLWAY_MANAGER_RUN_MAIN") == "1" {
		os.Args = append([]string{"spillway-manager"}, strings.Fields(os.Getenv("SPILLWAY_MANAGER_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func execute(ctx context.Context, args ...string) (string, error) {
	cmd := newCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestHelp(t *testing.T) {
	out, err := execute(context.Background(), "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--metrics-bind-address", "--health-probe-bind-address", "--leader-elect", "--domain", "--gateway-url", "--kubeconfig", "-v, --v"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %s", want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--domain", "Not A Domain"}, `--domain "Not A Domain"`},
		{[]string{"--gateway-url", "localhost:9090"}, `--gateway-url "localhost:9090": want an http(s) URL`},
		{[]string{"--controllers", "*,-nope"}, `--controllers: unknown controller "-nope"`},
		{[]string{"--metrics-bind-address", "8080"}, `--metrics-bind-address "8080": want host:port`},
		{[]string{"--llm-autoscaler-interval", "1ms"}, "--llm-autoscaler-interval 1ms"},
		{[]string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := execute(context.Background(), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(out, "Usage:") {
				t.Errorf("no usage printed:\n%s", out)
			}
		})
	}
}

func TestSelectControllers(t *testing.T) {
	all := controllerSetups()
	names := func(cs []controllerSetup) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return strings.Join(n, ",")
	}
	every := names(all)
	if !strings.HasPrefix(every, "inferenceservice,llmautoscaler") {
		t.Fatalf("controllers %q", every)
	}
	for sel, want := range map[string]string{
		"*":                 every,
		"*,-llmautoscaler":  strings.Replace(every, "llmautoscaler,", "", 1),
		"llmautoscaler":     "llmautoscaler",
		"-inferenceservice": "",
	} {
		got, err := selectControllers(strings.Split(sel, ","), all)
		if err != nil {
			t.Fatal(err)
		}
		if names(got) != want {
			t.Errorf("%s: got %q, want %q", sel, names(got), want)
		}
	}
}

func TestGatewayMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"http://127.0.0.1:9090":        "http://127.0.0.1:9090/metrics",
		"http://127.0.0.1:9090/":       "http://127.0.0.1:9090/metrics",
		"https://gw.example/x/metrics": "https://gw.example/x/metrics",
	} {
		got, err := gatewayMetricsURL(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url) //nolint:noctx // test on loopback
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestManagerRuns runs the command against a real apiserver: probes and
// metrics answer on loopback, the InferenceService controller is wired (a
// service gets its Deployment), and cancelling (what SIGTERM does) stops it.
func TestManagerRuns(t *testing.T) {
	env := framework.Start(t)
	mport, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pport, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := execute(ctx, "--kubeconfig", env.KubeconfigPath,
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", mport),
			"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", pport),
			"--domain", "spillway.test", "--graceful-shutdown-timeout", "5s")
		done <- err
	}()
	wait := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := f()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			select {
			case err := <-done:
				t.Fatalf("manager exited early: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		wait(path, func() error {
			code, body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", pport, path))
			if err != nil || code != 200 {
				return fmt.Errorf("%d %s %v", code, body, err)
			}
			return nil
		})
	}

	isvc := &spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "default"}}
	isvc.Spec.Predictor = spillwayv1alpha1.PredictorSpec{AutoscalerClass: "none", MinReplicas: ptr.To[int32](1),
		Containers: []corev1.Container{{Image: "engine:1"}}}
	if err := env.Client.Create(context.Background(), isvc); err != nil {
		t.Fatal(err)
	}
	wait("deployment", func() error {
		return env.Client.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "m-predictor"}, &appsv1.Deployment{})
	})
	wait("status URL", func() error {
		got := &spillwayv1alpha1.InferenceService{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "m"}, got); err != nil {
			return err
		}
		if got.Status.URL != "http://m-default.spillway.test" {
			return fmt.Errorf("url %q", got.Status.URL)
		}
		return nil
	})
	wait("/metrics", func() error {
		code, body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
		if err != nil || code != 200 || !strings.Contains(body, `controller_runtime_reconcile_total{controller="inferenceservice"`) {
			return fmt.Errorf("%d %v", code, err)
		}
		return nil
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("manager returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("manager did not stop after its context ended")
	}
}

// TestSIGTERM runs the real main in a child process and stops it with
// SIGTERM: it must exit 0, promptly, after logging its stop.
func TestSIGTERM(t *testing.T) {
	env := framework.Start(t)
	pport, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SPILLWAY_MANAGER_RUN_MAIN=1", fmt.Sprintf(
		"SPILLWAY_MANAGER_ARGS=--kubeconfig %s --metrics-bind-address 0 --health-probe-bind-address 127.0.0.1:%d --graceful-shutdown-timeout 5s",
		env.KubeconfigPath, pport))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", pport))
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("not ready: %v\n%s", err, out.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("exited early: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running 15 s after SIGTERM\n%s", out.String())
	}
	if !strings.Contains(out.String(), `"Stopped"`) {
		t.Errorf("no stop logged:\n%s", out.String())
	}
}
