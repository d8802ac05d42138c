package tunnel_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/internal/testenv"
	"outpost/tunnel"
)

// harness is a tunnel server behind an httptest server (ws:// or wss://)
// with an Authorize that accepts each environment's bound key only.
type harness struct {
	srv    *tunnel.Server
	http   *httptest.Server
	url    string
	fp     string      // the host key fingerprint agents pin
	tls    *tls.Config // trusts the test server's certificate (wss)
	closed chan closeEvent

	mu    sync.Mutex
	bound map[uint64]ssh.PublicKey
}

type closeEvent struct {
	id     uint64
	reason string
}

// start runs a tunnel server; cfg's HostKey, Authorize and OnClose are
// filled in when nil.
func start(t testing.TB, secure bool, cfg tunnel.ServerConfig) *harness {
	t.Helper()
	h := &harness{closed: make(chan closeEvent, 256), bound: make(map[uint64]ssh.PublicKey)}
	if cfg.HostKey == nil {
		cfg.HostKey = newSigner(t)
	}
	if cfg.Authorize == nil {
		cfg.Authorize = h.authorize
	}
	if cfg.OnClose == nil {
		cfg.OnClose = func(id uint64, reason string) {
			select {
			case h.closed <- closeEvent{id, reason}:
			default: // a benchmark's thousand tunnels: nobody reads
			}
		}
	}
	h.fp = ssh.FingerprintSHA256(cfg.HostKey.PublicKey())
	h.srv = tunnel.NewServer(cfg)
	mux := http.NewServeMux()
	mux.Handle("/tunnel", h.srv)
	if secure {
		h.http = httptest.NewTLSServer(mux)
		h.tls = h.http.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	} else {
		h.http = httptest.NewServer(mux)
	}
	h.url = "ws" + strings.TrimPrefix(h.http.URL, "http") + "/tunnel"
	t.Cleanup(func() {
		_ = h.srv.Close()
		h.http.Close()
	})
	return h
}

func (h *harness) authorize(user string, key ssh.PublicKey) (uint64, error) {
	id, err := strconv.ParseUint(user, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("user %q is not an environment ID", user)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	want, ok := h.bound[id]
	switch {
	case !ok:
		return 0, fmt.Errorf("environment %d is unknown", id)
	case !bytes.Equal(want.Marshal(), key.Marshal()):
		return 0, fmt.Errorf("environment %d is bound to another key", id)
	}
	return id, nil
}

// bind makes an identity key and binds environment id to it.
func (h *harness) bind(t testing.TB, id uint64) ssh.Signer {
	t.Helper()
	s := newSigner(t)
	h.mu.Lock()
	h.bound[id] = s.PublicKey()
	h.mu.Unlock()
	return s
}

// config is a client config for environment id with key, serving handler.
func (h *harness) config(id uint64, key ssh.Signer, handler http.Handler) tunnel.ClientConfig {
	return tunnel.ClientConfig{
		URL:                h.url,
		User:               strconv.FormatUint(id, 10),
		Signer:             key,
		HostKeyFingerprint: h.fp,
		TLS:                h.tls,
		Handler:            handler,
	}
}

// dial opens a tunnel, closed at the end of the test.
func dial(t testing.TB, cfg tunnel.ClientConfig) *tunnel.Client {
	t.Helper()
	c, err := tunnel.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitClose returns the next tunnel end the server reported.
func (h *harness) waitClose(t testing.TB) closeEvent {
	t.Helper()
	select {
	case e := <-h.closed:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no tunnel closed within 10s")
		return closeEvent{}
	}
}

// ended runs c.Wait aside: the channel yields its error when the tunnel ends.
func ended(c *tunnel.Client) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.Wait() }()
	return ch
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get fetches path from the agent API through c's transport.
func get(t testing.TB, tr http.RoundTripper, path string) string {
	t.Helper()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://agent" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}

// checkLeaks fails the test when, after everything the test registered
// later has been cleaned up, goroutines are left over. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			n := runtime.NumGoroutine()
			if n <= before {
				return true, ""
			}
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return false, fmt.Sprintf("%d goroutines, %d before the test:\n%s", n, before, buf)
		})
	})
}

// hello is an agent API: /hello answers who it is, /echo echoes the body.
func hello(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from "+name)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read all first: an HTTP/1 handler that writes before it has
		// read the body gets its connection closed.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	})
	return mux
}

// proxy forwards TCP connections to target until it is frozen: then it
// stops forwarding, in both directions, without closing anything, like a
// link that went silent.
type proxy struct {
	ln     net.Listener
	target string
	frozen chan struct{}
	freeze sync.Once
	done   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, frozen: make(chan struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			<-p.done // hold everything until the test ends
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

func (p *proxy) stop() { p.freeze.Do(func() { close(p.frozen) }) }

func (p *proxy) close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
