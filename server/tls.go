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
	"sync"
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
// Its session tickets are kept on the server (tlsSessions): a reconnecting
// agent's ClientHello and the server's new ticket each carry 16 bytes
// instead of Go's self-contained ticket (105 for a session without a client
// certificate).
func edgeTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := tlsConfig(cert, clientCAs)
	c.NextProtos = []string{protocol.ALPN, "http/1.1"}
	ts := newTLSSessions(time.Now)
	c.WrapSession, c.UnwrapSession = ts.wrap, ts.unwrap
	return c
}

// tlsSessions keeps resumable TLS sessions in memory, each named by a
// random 16-byte ticket (RFC 8446 4.6.1 allows a ticket to be a lookup key).
// A ticket resumes once: the resumed handshake brings a new one. A server
// restart forgets them all, as it forgot Go's ticket keys, and each agent
// makes one full handshake.
type tlsSessions struct {
	mu  sync.Mutex // guards m; held for no I/O
	m   map[[ticketSize]byte]tlsSession
	max int // maxTLSSessions, unless a test makes it smaller
	now func() time.Time
}

type tlsSession struct {
	state []byte // tls.SessionState.Bytes
	made  int64  // Unix seconds
}

const (
	ticketSize = 16
	// maxTLSSessions bounds the memory held (about 130 bytes a session
	// without a client certificate, 34 MB in all): one per device of a
	// large fleet, with room for those that left.
	maxTLSSessions = 1 << 18
	// ticketLifetime is as long as Go lets a client use a ticket.
	ticketLifetime = 7 * 24 * time.Hour
)

func newTLSSessions(now func() time.Time) *tlsSessions {
	return &tlsSessions{m: map[[ticketSize]byte]tlsSession{}, max: maxTLSSessions, now: now}
}

func (ts *tlsSessions) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	b, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	var id [ticketSize]byte
	_, _ = rand.Read(id[:]) // never fails
	now := ts.now().Unix()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.m) >= ts.max {
		ts.evict(now)
	}
	ts.m[id] = tlsSession{state: b, made: now}
	return id[:], nil
}

// evict drops the expired sessions and, if that is not enough, about a
// sixteenth of the others, at random. The caller holds mu.
func (ts *tlsSessions) evict(now int64) {
	for id, s := range ts.m {
		if now-s.made > int64(ticketLifetime/time.Second) {
			delete(ts.m, id)
		}
	}
	for id := range ts.m {
		if len(ts.m) < ts.max-ts.max/16 {
			return
		}
		delete(ts.m, id)
	}
}

// unwrap returns the session a ticket names, once; nil (a full handshake)
// for a ticket it does not know.
func (ts *tlsSessions) unwrap(ticket []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(ticket) != ticketSize {
		return nil, nil
	}
	id := [ticketSize]byte(ticket)
	ts.mu.Lock()
	s, ok := ts.m[id]
	delete(ts.m, id)
	ts.mu.Unlock()
	if !ok || ts.now().Unix()-s.made > int64(ticketLifetime/time.Second) {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(s.state)
	if err != nil {
		return nil, nil // not resumable: a full handshake
	}
	return ss, nil
}

// listenEdge listens for the API and edge connections with TCP keepalives
// off: a device on a metered link would pay for every probe. The server
// still drops a dead connection, after its IdleTimeout.
func listenEdge(ctx context.Context, addr string) (net.Listener, error) {
	return (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", addr)
}
