package server_test

// Edge frames through the real server (server.Run).

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/server"
)

// frameSync sends one sync frame with body on a new or kept connection and
// returns the answer's status and error code.
func frameSync(t *testing.T, c *tls.Conn, br *bufio.Reader, body []byte) (int, string) {
	t.Helper()
	out, err := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	f, err := protocol.ReadFrame(br)
	if err != nil {
		t.Fatalf("answer frame: %v", err)
	}
	var pe protocol.Error
	_ = protocol.ReadBody(f.Body, f.Encoding, &pe)
	return f.Status, pe.Code
}

// TestFramesClientCA: with --client-ca, a frame from a device with a
// certificate from the CA passes the certificate check (the sync handler
// then refuses "not cbor" as malformed), on a full handshake and on a
// resumed one (the 16-byte ticket's session must carry the verified
// chain); one without a certificate is refused.
func TestFramesClientCA(t *testing.T) {
	ca := testenv.NewCA(t, "fleet CA")
	good := ca.Issue(t, "ship-7")
	u, _ := url.Parse(runServer(t, server.Config{ClientCA: ca.CertFile, AdminPassword: "admin-password"}))
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(cert *tls.Certificate) *tls.Conn {
		tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{protocol.ALPN}, ClientSessionCache: cache} //nolint:gosec // test
		if cert != nil {
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c, err := tls.Dial("tcp", u.Host, tc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if c.ConnectionState().NegotiatedProtocol != protocol.ALPN {
			t.Fatalf("negotiated %q", c.ConnectionState().NegotiatedProtocol)
		}
		return c
	}
	for i := range 3 {
		c := dial(&good.TLS)
		status, code := frameSync(t, c, bufio.NewReader(c), []byte("not cbor"))
		t.Logf("connection %d: resumed %v: %d %s", i, c.ConnectionState().DidResume, status, code)
		if status != http.StatusBadRequest || code != protocol.CodeMalformed {
			t.Errorf("connection %d (resumed %v): %d %s, want 400 %s", i, c.ConnectionState().DidResume, status, code, protocol.CodeMalformed)
		}
		// Let the ticket in before the next connection.
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Read(make([]byte, 1))
	}
	cache = nil
	c := dial(nil)
	if status, code := frameSync(t, c, bufio.NewReader(c), []byte("not cbor")); status != http.StatusForbidden || code != "client_certificate_required" {
		t.Errorf("without certificate: %d %s, want 403 client_certificate_required", status, code)
	}
}

// TestRunStopsWithAHalfSentRequestHead: a kept connection that has sent
// one byte of its next request does not hold Run's shutdown, over frames
// as over HTTP/1.1 (net/http ends a connection reading a request's head at
// Shutdown), and its request is not served once Run has returned and
// closed the store.
func TestRunStopsWithAHalfSentRequestHead(t *testing.T) {
	for _, proto := range []string{"http/1.1", protocol.ALPN} {
		t.Run(proto, func(t *testing.T) {
			dir := t.TempDir()
			cfg := server.Config{DataDir: dir, Bind: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", AdminPassword: "admin-password",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan string, 1)
			done := make(chan error, 1)
			go func() { done <- server.Run(ctx, cfg, func(u string) { ready <- u }) }()
			var u *url.URL
			select {
			case s := <-ready:
				u, _ = url.Parse(s)
			case err := <-done:
				t.Fatal(err)
			}
			c, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}}) //nolint:gosec // test
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			br := bufio.NewReader(c)
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			// One whole exchange first, the connection kept.
			var next []byte
			if proto == protocol.ALPN {
				body, _, _ := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EnvID: 99, Include: protocol.IncludePing})
				if status, code := frameSync(t, c, br, body); status != http.StatusNotFound {
					t.Fatalf("first frame: %d %s", status, code)
				}
				next, _ = protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: body})
			} else {
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				next = []byte("POST /edge/v1/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 3\r\n\r\nabc")
			}
			// The next request's first byte only.
			if _, err := c.Write(next[:1]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // read by the server: nothing the test can poll changes
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(40 * time.Second):
				t.Fatal("Run did not return in 40 s")
			}
			took := time.Since(start)
			// The rest of the request, after Run returned.
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, werr := c.Write(next[1:])
			var answered string
			if werr != nil {
				t.Logf("write after Run: %v", werr)
			}
			if werr == nil {
				if proto == protocol.ALPN {
					if f, err := protocol.ReadFrame(br); err == nil {
						var pe protocol.Error
						_ = protocol.ReadBody(f.Body, f.Encoding, &pe)
						answered = fmt.Sprintf("%d %s: %s", f.Status, pe.Code, pe.Message)
					} else {
						t.Logf("after Run: %v", err)
					}
				} else if resp, err := http.ReadResponse(br, nil); err == nil {
					answered = resp.Status
					resp.Body.Close()
				}
			}
			t.Logf("%s: Run took %v to stop; the request finished after it: answered %q", proto, took.Round(100*time.Millisecond), answered)
			if took > 3*time.Second {
				t.Errorf("Run took %v to stop with a kept %s connection that sent 1 byte of its next request", took.Round(100*time.Millisecond), proto)
			}
			if answered != "" {
				t.Errorf("a request was served after Run returned: %s", answered)
			}
		})
	}
}
