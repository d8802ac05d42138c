package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"

	"outpost/server"
)

// runServer is the server side: the real Outpost server, and the Portainer
// way's endpoint beside it. It stops when its standard input closes.
func runServer(dir, addr, password string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	pt, err := startPortainerWay(net.JoinHostPort(addr, fmt.Sprint(portainerPort)))
	if err != nil {
		return err
	}
	defer func() { _ = pt.Close() }()
	cfg := server.Config{
		DataDir:       dir,
		Bind:          net.JoinHostPort(addr, fmt.Sprint(outpostPort)),
		TunnelAddr:    net.JoinHostPort(addr, fmt.Sprint(tunnelPort)),
		PublicURL:     fmt.Sprintf("https://%s:%d", addr, outpostPort),
		MetricsAddr:   server.MetricsOff,
		AdminPassword: password,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	return server.Run(ctx, cfg, func(string) { fmt.Println("ready") })
}

// startPortainerWay serves the Portainer way's async endpoint with Go's
// net/http defaults: TCP keepalives on accepted connections (15 s), no idle
// timeout, and the answer headers of an ordinary JSON API (Date,
// Content-Type, Content-Length, Content-Encoding, Vary and Portainer's two
// security headers). Its TLS is the same as Outpost's (TLS 1.3 with X25519,
// session tickets, an ECDSA P-256 certificate), so the two sides differ
// only above TLS.
func startPortainerWay(addr string) (*http.Server, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(portainerAnswer),
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.X25519}},
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "benchwire: portainer-way server:", err)
		}
	}()
	return srv, nil
}

// selfSigned makes an ECDSA P-256 certificate like the Outpost server's.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "portainer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP(serverIP)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
