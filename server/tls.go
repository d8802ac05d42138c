package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
)

// loadOrCreateCert returns the server's TLS certificate, making a self-signed
// ECDSA P-256 one on first start (small, so cheap on metered links).
func loadOrCreateCert(dir string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return c, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("load TLS certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "outpost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", host},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

// loadOrCreateHostKey returns the tunnel's SSH host key, made on first start.
// Its fingerprint goes into every edge key so agents can pin it.
func loadOrCreateHostKey(dir string) (ssh.Signer, error) {
	path := filepath.Join(dir, "tunnel_host_key")
	if b, err := os.ReadFile(path); err == nil {
		return ssh.ParsePrivateKey(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "outpost tunnel")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// tlsConfig prefers X25519 alone: Go's default hybrid post-quantum key share
// adds over 1 KB each way to every handshake, which metered links pay for.
// With clientCAs, a client certificate is asked for and, if given, must
// verify against them; having none is refused on the edge endpoints only
// (requireClientCert), since browsers use the UI and API on the same port.
func tlsConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{
		Certificates:     []tls.Certificate{cert},
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	}
	if clientCAs != nil {
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = clientCAs
	}
	return c
}

// edgeTLSConfig is tlsConfig for the port of the API and the edge
// endpoints: it also offers the edge frames (protocol.ALPN, frames.go) to
// agents that ask for them. Browsers and older agents negotiate HTTP/1.1
// (or nothing) and are served as before.
//
// Session tickets are Go's own, self-contained (about 105 bytes each way
// on a resumption). Tickets kept on the server could be 16 bytes, but Go
// hands a TLS 1.3 client its ticket before the client has finished its
// handshake: a store of them is filled, and the devices' sessions pushed
// out, by ClientHellos that never finish. Keeping them safely waits for a
// store that takes a session only once its handshake is over.
func edgeTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := tlsConfig(cert, clientCAs)
	c.NextProtos = []string{protocol.ALPN, "http/1.1"}
	return c
}

// listenEdge listens for the API and edge connections. TCP keepalives
// stay on for the API's connections (a watch or an exec whose operator
// vanished is found out); frame connections turn theirs off
// (serveFrameConn): a device on a metered link would pay for each probe.
func listenEdge(ctx context.Context, addr string) (net.Listener, error) {
	return (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
}
