package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/server"
)

// runServer runs the real server in-process on 127.0.0.1:0 with cfg's
// ClientCA and returns its URL; it stops when the test ends.
func runServer(t *testing.T, cfg server.Config) string {
	t.Helper()
	cfg.DataDir, cfg.Bind, cfg.TunnelAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	runErr := make(chan error, 1)
	go func() { runErr <- server.Run(ctx, cfg, func(url string) { ready <- url }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case url := <-ready:
		return url
	case err := <-runErr:
		runErr <- nil // for the cleanup
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start in 30 s")
	}
	return ""
}

// mtlsClient trusts the server's self-signed certificate and presents cert,
// if not nil, whatever CAs the server asks for: Go's default would withhold
// a certificate whose issuer the server does not name, and the test wants
// the server to see it.
func mtlsClient(t *testing.T, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{InsecureSkipVerify: true} // the server's self-signed certificate
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestClientCA runs the server with --client-ca: an edge request needs a
// client certificate from that CA, one from another CA fails the handshake,
// and the UI, API and /healthz, used by browsers without certificates, work
// without one.
func TestClientCA(t *testing.T) {
	ca, other := testenv.NewCA(t, "fleet CA"), testenv.NewCA(t, "someone else's CA")
	good, stranger := ca.Issue(t, "ship-7"), other.Issue(t, "ship-7")
	url := runServer(t, server.Config{ClientCA: ca.CertFile, AdminPassword: "admin-password"})

	// A body that is not CBOR: past the certificate check it is refused as
	// malformed by the sync handler itself.
	sync := func(c *http.Client) (int, *protocol.Error, error) {
		resp, err := c.Post(url+"/edge/v1/sync", protocol.ContentType, strings.NewReader("not cbor"))
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, nil, err
		}
		var pe protocol.Error
		if err := protocol.ReadBody(b, resp.Header.Get("Content-Encoding"), &pe); err != nil {
			t.Fatalf("edge answer %d: %v: %q", resp.StatusCode, err, b)
		}
		return resp.StatusCode, &pe, nil
	}

	t.Run("edge without certificate", func(t *testing.T) {
		status, pe, err := sync(mtlsClient(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusForbidden || pe.Code != "client_certificate_required" || !strings.Contains(pe.Message, "EDGE_CLIENT_CERT") {
			t.Errorf("answer %d %+v, want 403 client_certificate_required naming EDGE_CLIENT_CERT", status, pe)
		}
	})
	t.Run("edge with certificate from another CA", func(t *testing.T) {
		status, pe, err := sync(mtlsClient(t, &stranger.TLS))
		if err == nil {
			t.Fatalf("request got through (%d %+v), want a failed TLS handshake", status, pe)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("edge with certificate from the CA", func(t *testing.T) {
		status, pe, err := sync(mtlsClient(t, &good.TLS))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusBadRequest || pe.Code != protocol.CodeMalformed {
			t.Errorf("answer %d %+v, want the sync handler's 400 malformed", status, pe)
		}
	})
	t.Run("API and healthz without certificate", func(t *testing.T) {
		c := mtlsClient(t, nil)
		resp, err := c.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("/healthz: %d, want 204", resp.StatusCode)
		}
		resp, err = c.Post(url+"/api/auth", "application/json", strings.NewReader(`{"username":"admin","password":"admin-password"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"token"`)) {
			t.Errorf("/api/auth: %d %s, want 200 with a token", resp.StatusCode, b)
		}
	})
}

// TestClientCAConfig: a missing file or one without a certificate is a
// config error, reported with the other config errors.
func TestClientCAConfig(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"missing file", filepath.Join(dir, "nope.pem"), "no such file"},
		{"no certificate", empty, "no PEM CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := server.Run(context.Background(), server.Config{DataDir: t.TempDir(), Bind: "nonsense", ClientCA: tc.file}, nil)
			if err == nil {
				t.Fatal("server started")
			}
			for _, want := range []string{"client-ca " + `"` + tc.file + `"`, tc.want, `bind "nonsense"`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
