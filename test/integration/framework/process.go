package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a control-plane binary run by the framework, its output in a
// log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan error
}

func startProcess(name, path, logPath string, args []string) (*process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		log.Close()
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to 10 s before killing.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

func (p *process) tail(lines int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// waitHealthy polls an https /healthz until it answers 200, the process
// exits, or the timeout passes.
func (p *process) waitHealthy(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback test server with a self-signed cert
	}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body.String())
		} else {
			last = err.Error()
		}
		select {
		case err := <-p.done:
			return fmt.Errorf("%s exited (%v); log tail:\n%s", p.name, err, p.tail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy after %s (last: %s); log tail:\n%s", p.name, timeout, last, p.tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DefaultControllers is kube-controller-manager's --controllers in tests:
// everything but the node lifecycle controller, which would taint the
// kubelet-less nodes tests register.
const DefaultControllers = "*,-nodelifecycle"

func (e *Env) startControllerManager() error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	controllers := e.opts.kcmControllers
	if controllers == "" {
		controllers = DefaultControllers
	}
	args := []string{
		"--kubeconfig=" + e.KubeconfigPath,
		"--authentication-kubeconfig=" + e.KubeconfigPath,
		"--authorization-kubeconfig=" + e.KubeconfigPath,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(e.Dir, "kcm-certs"),
		"--leader-elect=false",
		"--controllers=" + controllers,
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + filepath.Join(e.CertDir(), "sa-signer.key"),
		"--concurrent-deployment-syncs=5",
		"--concurrent-replicaset-syncs=5",
		"--v=2",
	}
	args = append(args, e.opts.kcmArgs...)
	p, err := startProcess("kube-controller-manager", filepath.Join(e.AssetsDir, "kube-controller-manager"),
		filepath.Join(e.Dir, "kube-controller-manager.log"), args)
	if err != nil {
		return err
	}
	e.kcm = p
	return p.waitHealthy(fmt.Sprintf("https://127.0.0.1:%d/healthz", port), 60*time.Second)
}
