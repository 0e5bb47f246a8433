package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidFile is where a component's process id is kept.
func (c Config) pidFile(name string) string { return filepath.Join(c.StateDir, "run", name+".pid") }

// Up starts every component that is not already running, in order, waits for
// each to be healthy, and writes the kubeconfig. Progress lines go to out.
// Processes run detached (own process group) and outlive Up; Down stops them.
func Up(ctx context.Context, c Config, out io.Writer, now time.Time) error {
	for _, d := range []string{filepath.Join(c.StateDir, "pki"), c.LogDir(), filepath.Join(c.StateDir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	fmt.Fprintf(out, "state folder %s\n", c.StateDir)
	if err := EnsurePKI(filepath.Join(c.StateDir, "pki"), now); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := os.WriteFile(c.KubeconfigPath(), []byte(Kubeconfig(c)), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	hc, err := c.adminHTTPClient()
	if err != nil {
		return err
	}
	for _, comp := range Components(c) {
		if pid, ok := c.running(comp.Name); ok {
			fmt.Fprintf(out, "%-24s already running (pid %d)\n", comp.Name, pid)
			continue
		}
		if _, err := os.Stat(comp.Binary); err != nil {
			if comp.Optional {
				fmt.Fprintf(out, "%-24s skipped: %s not built\n", comp.Name, comp.Binary)
				continue
			}
			return fmt.Errorf("%s: binary %s: %w", comp.Name, comp.Binary, err)
		}
		if comp.Before != nil {
			if err := comp.Before(c); err != nil {
				return fmt.Errorf("%s: %w", comp.Name, err)
			}
		}
		pid, err := c.start(comp)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%-24s started (pid %d, log %s)\n", comp.Name, pid, filepath.Join(c.LogDir(), comp.Name+".log"))
		health, client := c.healthProbe(comp, hc)
		if health != "" {
			if err := waitHealthy(ctx, client, health, 90*time.Second, func() bool { _, ok := c.running(comp.Name); return ok }); err != nil {
				return fmt.Errorf("%s did not become healthy (see %s): %w", comp.Name, filepath.Join(c.LogDir(), comp.Name+".log"), err)
			}
			fmt.Fprintf(out, "%-24s healthy\n", comp.Name)
		}
		if comp.After != nil {
			if err := comp.After(ctx, c, out); err != nil {
				return fmt.Errorf("%s: %w (see %s)", comp.Name, err, filepath.Join(c.LogDir(), comp.Name+".log"))
			}
		}
	}
	if err := WaitDefaultServiceAccount(ctx, c, 60*time.Second); err != nil {
		return fmt.Errorf("waiting for the default ServiceAccount (kube-controller-manager, see %s): %w",
			filepath.Join(c.LogDir(), "kube-controller-manager.log"), err)
	}
	fmt.Fprintf(out, "kubeconfig %s\n", c.KubeconfigPath())
	return nil
}

func (c Config) start(comp Component) (int, error) {
	logf, err := os.OpenFile(filepath.Join(c.LogDir(), comp.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("%s: opening log: %w", comp.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(comp.Binary, comp.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.KubeconfigPath())
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", comp.Name, err)
	}
	pid := cmd.Process.Pid
	// Reap the child if it exits while we are still here.
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(c.pidFile(comp.Name), []byte(strconv.Itoa(pid)), 0o600); err != nil {
		return pid, fmt.Errorf("%s: writing pid file: %w", comp.Name, err)
	}
	return pid, nil
}

// running reports the pid of a component whose pid file names a live process.
func (c Config) running(name string) (int, bool) {
	b, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, false
	}
	// A zombie (exited child not yet reaped) counts as stopped.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return 0, false
		}
	}
	return pid, true
}

// ComponentStatus is one line of Status.
type ComponentStatus struct {
	Name    string
	PID     int
	Running bool
	Healthy bool
}

// Status reports each component's process and health.
func Status(ctx context.Context, c Config) []ComponentStatus {
	hc, _ := c.adminHTTPClient()
	var res []ComponentStatus
	for _, comp := range Components(c) {
		s := ComponentStatus{Name: comp.Name}
		s.PID, s.Running = c.running(comp.Name)
		url, client := c.healthProbe(comp, hc)
		if s.Running && url != "" {
			s.Healthy = probe(ctx, client, url) == nil
		} else {
			s.Healthy = s.Running
		}
		res = append(res, s)
	}
	return res
}

// Down stops the components in reverse order: SIGTERM, then SIGKILL after
// grace. With wipe, the state folder is removed afterwards.
func Down(c Config, out io.Writer, grace time.Duration, wipe bool) error {
	comps := Components(c)
	var errs []error
	for i := len(comps) - 1; i >= 0; i-- {
		name := comps[i].Name
		pid, ok := c.running(name)
		if !ok {
			_ = os.Remove(c.pidFile(name))
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) {
			if _, ok := c.running(name); !ok {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, ok := c.running(name); ok {
			fmt.Fprintf(out, "%-24s did not stop in %s, killing\n", name, grace)
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
				errs = append(errs, fmt.Errorf("killing %s: %w", name, err))
			}
		}
		fmt.Fprintf(out, "%-24s stopped\n", name)
		_ = os.Remove(c.pidFile(name))
	}
	if wipe {
		if err := os.RemoveAll(c.StateDir); err != nil {
			errs = append(errs, fmt.Errorf("wiping %s: %w", c.StateDir, err))
		} else {
			fmt.Fprintf(out, "state folder %s removed\n", c.StateDir)
		}
	}
	return errors.Join(errs...)
}

func (c Config) adminHTTPClient() (*http.Client, error) {
	ca, err := readCert(c.pki(FileCACert))
	if err != nil {
		return nil, fmt.Errorf("reading CA: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(c.pki(FileAdminCert), c.pki(FileAdminKey))
	if err != nil {
		return nil, fmt.Errorf("reading admin certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}}, nil
}

// healthProbe is the URL and client that tell whether comp is healthy:
// kube-apiserver's /readyz with the admin certificate, an https HealthURL
// verified with the process's own certificate file, else plain HTTP.
func (c Config) healthProbe(comp Component, admin *http.Client) (string, *http.Client) {
	switch {
	case comp.Name == "kube-apiserver":
		if admin == nil {
			return "", nil
		}
		return c.APIServerURL() + "/readyz", admin
	case comp.HealthCAFile != "":
		return comp.HealthURL, &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12,
				// Verified below against the file as it is at each
				// handshake: the process writes it as it starts.
				InsecureSkipVerify: true, //nolint:gosec // VerifyConnection does the verification
				VerifyConnection:   verifyWithFile(comp.HealthCAFile, urlHost(comp.HealthURL))},
		}}
	}
	return comp.HealthURL, http.DefaultClient
}

func urlHost(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Hostname()
}

// verifyWithFile verifies a server's certificate chain against the
// certificates of a PEM file read at each handshake.
func verifyWithFile(file, host string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading %s: %w", file, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return fmt.Errorf("no certificate in %s", file)
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
		return err
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func waitHealthy(ctx context.Context, client *http.Client, url string, timeout time.Duration, alive func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if last = probe(ctx, client, url); last == nil {
			return nil
		}
		if !alive() {
			return errors.New("process exited")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}
