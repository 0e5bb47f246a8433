package localcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Cert and key file names under the state folder's pki directory.
const (
	FileCACert           = "ca.crt"
	FileCAKey            = "ca.key"
	FileServingCert      = "apiserver.crt"
	FileServingKey       = "apiserver.key"
	FileAdminCert        = "admin.crt"
	FileAdminKey         = "admin.key"
	FileFrontProxyCACert = "front-proxy-ca.crt"
	FileFrontProxyCAKey  = "front-proxy-ca.key"
	FileProxyClientCert  = "front-proxy-client.crt"
	FileProxyClientKey   = "front-proxy-client.key"
	FileSAKey            = "sa.key"
	FileSAPub            = "sa.pub"
)

// FrontProxyClientName is the CN of the aggregator's client certificate; it is
// the only name kube-apiserver accepts request headers from.
const FrontProxyClientName = "front-proxy-client"

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// EnsurePKI writes the local cluster's CA, serving, admin-client, front-proxy
// and service-account keys under dir unless they are already there. now is the
// start of the certificates' validity.
func EnsurePKI(dir string, now time.Time) error {
	if _, err := os.Stat(filepath.Join(dir, FileSAPub)); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating pki folder: %w", err)
	}
	ca, err := newCA("spillway-local-ca", now)
	if err != nil {
		return err
	}
	fpCA, err := newCA("spillway-front-proxy-ca", now)
	if err != nil {
		return err
	}
	serving, err := newLeaf(ca, pkix.Name{CommonName: "kube-apiserver"}, now,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")})
	if err != nil {
		return err
	}
	admin, err := newLeaf(ca, pkix.Name{CommonName: "spillway-admin", Organization: []string{"system:masters"}}, now,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return err
	}
	proxy, err := newLeaf(fpCA, pkix.Name{CommonName: FrontProxyClientName}, now,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		kp        *keyPair
		cert, key string
	}{
		{ca, FileCACert, FileCAKey},
		{fpCA, FileFrontProxyCACert, FileFrontProxyCAKey},
		{serving, FileServingCert, FileServingKey},
		{admin, FileAdminCert, FileAdminKey},
		{proxy, FileProxyClientCert, FileProxyClientKey},
	} {
		if err := writePair(dir, w.kp, w.cert, w.key); err != nil {
			return err
		}
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generating service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding service-account public key: %w", err)
	}
	if err := writePEM(filepath.Join(dir, FileSAKey), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, FileSAPub), "PUBLIC KEY", pub)
}

func newCA(cn string, now time.Time) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key of %s: %w", cn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func newLeaf(ca *keyPair, subject pkix.Name, now time.Time, usage []x509.ExtKeyUsage, dns []string, ips []net.IP) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key of %s: %w", subject.CommonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux.
	}
	return n
}

func writePair(dir string, kp *keyPair, certFile, keyFile string) error {
	if err := writePEM(filepath.Join(dir, certFile), "CERTIFICATE", kp.cert.Raw); err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(kp.key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", keyFile, err)
	}
	return writePEM(filepath.Join(dir, keyFile), "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readCert reads one PEM certificate.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New(path + ": no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}
