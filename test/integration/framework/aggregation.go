package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FrontProxyClientName is the common name of the client certificate the
// aggregator presents to extension API servers.
const FrontProxyClientName = "front-proxy-client"

// FrontProxy is the aggregation layer's PKI: a front-proxy CA, and the
// client certificate kube-apiserver uses to proxy to extension API servers
// (which trust it through the extension-apiserver-authentication ConfigMap).
type FrontProxy struct {
	CAFile, ClientCertFile, ClientKeyFile string
}

// NewFrontProxy writes a front-proxy CA and client certificate into dir.
func NewFrontProxy(dir string) (*FrontProxy, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "spillway-test-front-proxy-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("front-proxy CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: FrontProxyClientName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, ca, &clientKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("front-proxy client certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		return nil, err
	}
	fp := &FrontProxy{
		CAFile:         filepath.Join(dir, "front-proxy-ca.crt"),
		ClientCertFile: filepath.Join(dir, "front-proxy-client.crt"),
		ClientKeyFile:  filepath.Join(dir, "front-proxy-client.key"),
	}
	for path, block := range map[string]*pem.Block{
		fp.CAFile:         {Type: "CERTIFICATE", Bytes: caDER},
		fp.ClientCertFile: {Type: "CERTIFICATE", Bytes: clientDER},
		fp.ClientKeyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return fp, nil
}

// APIServerArgs are the kube-apiserver flags that turn the aggregation
// layer's proxying on with this PKI. Aggregator routing stays at its default
// (through the Service, not its endpoints): endpoints cannot hold loopback
// addresses, so tests point APIServices at an ExternalName Service instead.
func (fp *FrontProxy) APIServerArgs() map[string][]string {
	return map[string][]string{
		"requestheader-client-ca-file":       {fp.CAFile},
		"requestheader-allowed-names":        {FrontProxyClientName},
		"requestheader-username-headers":     {"X-Remote-User"},
		"requestheader-group-headers":        {"X-Remote-Group"},
		"requestheader-extra-headers-prefix": {"X-Remote-Extra-"},
		"proxy-client-cert-file":             {fp.ClientCertFile},
		"proxy-client-key-file":              {fp.ClientKeyFile},
	}
}

// WithAggregation configures kube-apiserver for the API aggregation layer
// (front-proxy certificates and requestheader flags), so APIServices can be
// served by extension API servers such as a custom-metrics adapter.
func WithAggregation(tb testing.TB) Option {
	tb.Helper()
	fp, err := NewFrontProxy(tb.TempDir())
	if err != nil {
		tb.Fatalf("front-proxy certificates: %v", err)
	}
	return WithAPIServerArgs(fp.APIServerArgs())
}
