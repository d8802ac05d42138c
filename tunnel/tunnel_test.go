package tunnel_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/tunnel"
)

// Requests go through the tunnel both ways, over ws and wss, keep-alive
// reuses the channel, and the tunnel ends cleanly when the agent closes it.
func TestRoundTrip(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[secure], func(t *testing.T) {
			checkLeaks(t)
			h := start(t, secure, tunnel.ServerConfig{})
			key := h.bind(t, 42)
			c := dial(t, h.config(42, key, hello("agent 42")))

			conn, err := h.srv.Wait(t.Context(), 42)
			if err != nil {
				t.Fatal(err)
			}
			if conn.ID() != 42 || h.srv.Conn(42) != conn || h.srv.Count() != 1 {
				t.Fatalf("server has conn %v (id %d), count %d", h.srv.Conn(42), conn.ID(), h.srv.Count())
			}
			if got := get(t, conn.Transport(), "/hello"); got != "hello from agent 42" {
				t.Fatalf("GET /hello = %q", got)
			}

			// A body larger than the SSH window, both ways.
			body := bytes.Repeat([]byte("0123456789abcdef"), 160<<10) // 2.5 MiB
			var reused bool
			trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace),
				http.MethodPost, "http://agent/echo", bytes.NewReader(body))
			resp, err := conn.Transport().RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("echo: %d bytes back (want %d), err %v", len(got), len(body), err)
			}
			if !reused {
				t.Error("the second request did not reuse the first one's channel")
			}

			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(); !errors.Is(err, tunnel.ErrClosed) {
				t.Errorf("Wait after Close = %v, want ErrClosed", err)
			}
			if e := h.waitClose(t); e.id != 42 || !strings.HasPrefix(e.reason, "agent disconnected") {
				t.Errorf("server saw %+v, want env 42 agent disconnected", e)
			}
			<-conn.Done()
			if h.srv.Count() != 0 || h.srv.Conn(42) != nil {
				t.Errorf("server still has %d tunnels", h.srv.Count())
			}
		})
	}
}

// An agent that pins another fingerprint refuses the server, saying which
// keys differ; the server gets no tunnel.
func TestHostKeyMismatch(t *testing.T) {
	checkLeaks(t)
	h := start(t, false, tunnel.ServerConfig{})
	key := h.bind(t, 1)
	cfg := h.config(1, key, hello("1"))
	cfg.HostKeyFingerprint = ssh.FingerprintSHA256(newSigner(t).PublicKey())

	_, err := tunnel.Dial(t.Context(), cfg)
	if !errors.Is(err, tunnel.ErrHostKey) {
		t.Fatalf("Dial = %v, want ErrHostKey", err)
	}
	want := fmt.Sprintf("tunnel host key %s does not match the fingerprint in the edge key %s", h.fp, cfg.HostKeyFingerprint)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\ndoes not say %q", err, want)
	}
	if h.srv.Count() != 0 {
		t.Errorf("server has %d tunnels", h.srv.Count())
	}
}

// A key Authorize refuses gets no tunnel, whatever the reason.
func TestRefused(t *testing.T) {
	checkLeaks(t)
	h := start(t, false, tunnel.ServerConfig{})
	bound := h.bind(t, 7)
	other := newSigner(t)
	for _, tc := range []struct {
		name string
		user string
		key  ssh.Signer
	}{
		{"unknown environment", "8", bound},
		{"another key", "7", other},
		{"not an ID", "seven", bound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := h.config(7, tc.key, hello("7"))
			cfg.User = tc.user
			_, err := tunnel.Dial(t.Context(), cfg)
			if !errors.Is(err, tunnel.ErrRefused) {
				t.Fatalf("Dial = %v, want ErrRefused", err)
			}
			if h.srv.Count() != 0 || h.srv.Conn(7) != nil || h.srv.Conn(8) != nil {
				t.Errorf("server has %d tunnels", h.srv.Count())
			}
		})
	}
}

// A second tunnel for an environment replaces the first: the old one is
// closed on both sides and requests reach the new agent.
func TestReplace(t *testing.T) {
	checkLeaks(t)
	h := start(t, false, tunnel.ServerConfig{})
	key := h.bind(t, 5)
	first := dial(t, h.config(5, key, hello("first")))
	old, err := h.srv.Wait(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, old.Transport(), "/hello"); got != "hello from first" {
		t.Fatalf("first: %q", got)
	}
	firstEnd := ended(first)

	dial(t, h.config(5, key, hello("second")))
	if e := h.waitClose(t); e != (closeEvent{5, "replaced"}) {
		t.Fatalf("server saw %+v, want env 5 replaced", e)
	}
	<-old.Done()
	if err := <-firstEnd; err == nil || errors.Is(err, tunnel.ErrClosed) {
		t.Errorf("first agent's Wait = %v, want the connection's end", err)
	}
	now := h.srv.Conn(5)
	if now == nil || now == old || h.srv.Count() != 1 {
		t.Fatalf("server has %v (old %v), count %d", now, old, h.srv.Count())
	}
	if got := get(t, now.Transport(), "/hello"); got != "hello from second" {
		t.Fatalf("second: %q", got)
	}
}

// Half-close survives the tunnel both ways, as a Docker attach needs: the
// server closes stdin and still reads stdout; the agent reads stdin to EOF,
// answers, closes its side and the server reads to EOF.
func TestHalfClose(t *testing.T) {
	checkLeaks(t)
	h := start(t, false, tunnel.ServerConfig{})
	key := h.bind(t, 3)
	agentErr := make(chan error, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "tcp")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			agentErr <- err
			return
		}
		defer func() { _ = conn.Close() }()
		stdin, err := io.ReadAll(brw) // to the server's EOF
		if err != nil {
			agentErr <- fmt.Errorf("agent read: %w", err)
			return
		}
		if _, err := fmt.Fprintf(conn, "stdout after %d bytes of stdin: %s", len(stdin), stdin); err != nil {
			agentErr <- fmt.Errorf("agent write after EOF: %w", err)
			return
		}
		cw, ok := conn.(interface{ CloseWrite() error })
		if !ok {
			agentErr <- fmt.Errorf("agent side %T has no CloseWrite", conn)
			return
		}
		agentErr <- cw.CloseWrite()
		_, _ = io.Copy(io.Discard, conn)
	})
	dial(t, h.config(3, key, handler))
	c, err := h.srv.Wait(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}

	conn, err := c.DialContext(t.Context(), "tcp", "agent:80")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_, _ = io.WriteString(conn, "POST /attach HTTP/1.1\r\nHost: agent\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if _, err := io.WriteString(conn, "ls -l"); err != nil {
		t.Fatal(err)
	}
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("server side %T has no CloseWrite", conn)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	stdout, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("server read after its CloseWrite: %v", err)
	}
	if want := "stdout after 5 bytes of stdin: ls -l"; string(stdout) != want {
		t.Fatalf("stdout %q, want %q", stdout, want)
	}
	if err := <-agentErr; err != nil {
		t.Fatal(err)
	}
}

// A peer gone silent (the link stops forwarding, nothing is closed) is
// dropped by both sides within two keepalive periods.
func TestKeepAliveTimeout(t *testing.T) {
	checkLeaks(t)
	const period = 100 * time.Millisecond
	h := start(t, false, tunnel.ServerConfig{KeepAlive: period})
	p := newProxy(t, h.http.Listener.Addr().String())
	key := h.bind(t, 9)
	cfg := h.config(9, key, hello("9"))
	cfg.URL = "ws://" + p.addr() + "/tunnel"
	cfg.KeepAlive = period
	c := dial(t, cfg)
	conn, err := h.srv.Wait(t.Context(), 9)
	if err != nil {
		t.Fatal(err)
	}
	agentEnd := ended(c)

	// Keepalives alone keep a quiet, healthy tunnel up.
	select {
	case <-conn.Done():
		t.Fatal("the server dropped a healthy tunnel")
	case err := <-agentEnd:
		t.Fatalf("the agent dropped a healthy tunnel: %v", err)
	case <-time.After(6 * period):
	}
	_ = get(t, conn.Transport(), "/hello")

	p.stop()
	frozen := time.Now()
	// Allow scheduling noise on a shared machine, but less than a third
	// period: the drop must come from two periods of silence.
	limit := 2*period + 90*time.Millisecond

	select {
	case err := <-agentEnd:
		if !errors.Is(err, tunnel.ErrKeepAlive) {
			t.Errorf("agent Wait = %v, want ErrKeepAlive", err)
		}
		t.Logf("agent noticed after %v", time.Since(frozen))
		if d := time.Since(frozen); d > limit {
			t.Errorf("agent noticed after %v, want within %v", d, limit)
		}
	case <-time.After(10 * period):
		t.Fatal("agent did not notice the dead link")
	}
	e := h.waitClose(t)
	d := time.Since(frozen)
	if e != (closeEvent{9, "keepalive timeout"}) {
		t.Errorf("server saw %+v, want keepalive timeout", e)
	}
	t.Logf("server noticed after at most %v", d)
	if d > limit {
		t.Errorf("server noticed after %v, want within %v", d, limit)
	}
}

// snapshotter is an agent API whose /snapshot counts its calls and whose
// /slow holds until release is closed.
type snapshotter struct {
	snaps   atomic.Int32
	release chan struct{}
}

func (s *snapshotter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/snapshot":
		s.snaps.Add(1)
		_, _ = io.WriteString(w, "snapshot")
	case "/slow":
		<-s.release
		_, _ = io.WriteString(w, "slow")
	default:
		http.NotFound(w, r)
	}
}

// An idle agent announces it, the server takes a last snapshot through the
// tunnel in OnIdle, then the agent closes with ErrInactive. A request in
// progress keeps the tunnel up however long it takes.
func TestInactivity(t *testing.T) {
	checkLeaks(t)
	const inactivity = 300 * time.Millisecond
	var snapshot atomic.Value
	var idleAt atomic.Int64
	h := start(t, false, tunnel.ServerConfig{
		OnIdle: func(ctx context.Context, c *tunnel.Conn) {
			idleAt.Store(time.Now().UnixNano())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/snapshot", nil)
			resp, err := c.Transport().RoundTrip(req)
			if err != nil {
				snapshot.Store("error: " + err.Error())
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			snapshot.Store(string(b))
		},
	})
	key := h.bind(t, 11)
	api := &snapshotter{release: make(chan struct{})}
	cfg := h.config(11, key, api)
	cfg.Inactivity = inactivity
	c := dial(t, cfg)
	conn, err := h.srv.Wait(t.Context(), 11)
	if err != nil {
		t.Fatal(err)
	}
	agentEnd := ended(c)

	slow := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: conn.Transport()}).Get("http://agent/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		slow <- string(b)
	}()
	select {
	case err := <-agentEnd:
		t.Fatalf("closed during a request: %v", err)
	case <-time.After(3 * inactivity):
	}
	released := time.Now() // the agent's last activity is after this
	close(api.release)
	if got := <-slow; got != "slow" {
		t.Fatalf("slow request: %q", got)
	}

	select {
	case err := <-agentEnd:
		if !errors.Is(err, tunnel.ErrInactive) {
			t.Fatalf("agent Wait = %v, want ErrInactive", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle tunnel stayed up")
	}
	if d := time.Unix(0, idleAt.Load()).Sub(released); d < inactivity {
		t.Errorf("went idle %v after the last request, want >= %v", d, inactivity)
	}
	if got := snapshot.Load(); got != "snapshot" || api.snaps.Load() != 1 {
		t.Errorf("OnIdle got %v, agent served %d snapshots; want one", got, api.snaps.Load())
	}
	if e := h.waitClose(t); e != (closeEvent{11, "inactive"}) {
		t.Errorf("server saw %+v, want inactive", e)
	}
	if h.srv.Conn(11) != nil {
		t.Error("the server still lists the closed tunnel")
	}
}

// Tunnels going idle together run their OnIdle side by side: 50 of 200 ms
// each finish in far less than 50 × 200 ms.
func TestInactivityConcurrent(t *testing.T) {
	checkLeaks(t)
	const (
		n      = 50
		onIdle = 200 * time.Millisecond
	)
	var running, peak atomic.Int32
	var first atomic.Int64 // when the first OnIdle started, Unix ns
	h := start(t, false, tunnel.ServerConfig{
		OnIdle: func(ctx context.Context, c *tunnel.Conn) {
			first.CompareAndSwap(0, time.Now().UnixNano())
			now := running.Add(1)
			for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
			}
			defer running.Add(-1)
			if resp, err := (&http.Client{Transport: c.Transport()}).Get("http://agent/snapshot"); err == nil {
				_ = resp.Body.Close()
			}
			select {
			case <-time.After(onIdle): // a slow snapshot store
			case <-ctx.Done():
			}
		},
	})
	api := &snapshotter{}
	ends := make([]<-chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		key := h.bind(t, uint64(100+i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := h.config(uint64(100+i), key, api)
			cfg.Inactivity = time.Second
			c, err := tunnel.Dial(t.Context(), cfg)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			ends[i] = ended(c)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, end := range ends {
		if err := <-end; !errors.Is(err, tunnel.ErrInactive) {
			t.Errorf("tunnel %d: %v, want ErrInactive", i, err)
		}
	}
	took := time.Since(time.Unix(0, first.Load()))
	t.Logf("%d OnIdle of %v: %v from the first to the last close, %d at once at most", n, onIdle, took, peak.Load())
	if serial := n * onIdle; took > serial/2 {
		t.Errorf("took %v, want well under %v", took, serial)
	}
	if api.snaps.Load() != n {
		t.Errorf("%d snapshots, want %d", api.snaps.Load(), n)
	}
}

// Server.Wait waits for the environment's tunnel, or for ctx.
func TestWait(t *testing.T) {
	checkLeaks(t)
	h := start(t, false, tunnel.ServerConfig{})
	key := h.bind(t, 21)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if c, err := h.srv.Wait(ctx, 21); c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with no agent = %v, %v", c, err)
	}

	got := make(chan *tunnel.Conn, 1)
	go func() {
		c, _ := h.srv.Wait(t.Context(), 21)
		got <- c
	}()
	dial(t, h.config(21, key, hello("21")))
	select {
	case c := <-got:
		if c == nil || c.ID() != 21 {
			t.Fatalf("Wait = %v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return when the tunnel came up")
	}
}

// Closing the server ends every tunnel and refuses new ones.
func TestServerClose(t *testing.T) {
	checkLeaks(t)
	h := start(t, true, tunnel.ServerConfig{})
	var ends []<-chan error
	for id := uint64(1); id <= 3; id++ {
		ends = append(ends, ended(dial(t, h.config(id, h.bind(t, id), hello("")))))
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := h.srv.Wait(context.Background(), 99)
		waiting <- err
	}()
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, end := range ends {
		if err := <-end; err == nil {
			t.Error("a tunnel survived Close")
		}
	}
	for range 3 {
		if e := h.waitClose(t); e.reason != "server closed" {
			t.Errorf("%+v, want server closed", e)
		}
	}
	if err := <-waiting; !errors.Is(err, tunnel.ErrClosed) {
		t.Errorf("Wait during Close = %v, want ErrClosed", err)
	}
	_, err := tunnel.Dial(t.Context(), h.config(1, h.bind(t, 1), hello("")))
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Dial after Close = %v, want 503", err)
	}
}

// Dial reports every config problem at once, and stops when ctx ends.
func TestDialErrors(t *testing.T) {
	checkLeaks(t)
	_, err := tunnel.Dial(t.Context(), tunnel.ClientConfig{URL: "http://x/tunnel", HostKeyFingerprint: "abc"})
	for _, want := range []string{"scheme", "User", "Signer", "HostKeyFingerprint", "Handler"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config error %v does not mention %s", err, want)
		}
	}

	// A server that accepts the TCP connection and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	h := start(t, false, tunnel.ServerConfig{})
	cfg := h.config(1, h.bind(t, 1), hello(""))
	cfg.URL = "ws://" + ln.Addr().String() + "/tunnel"
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := tunnel.Dial(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a silent server = %v, want the deadline", err)
	}
}

// Run redials (with the injected backoff, so at once) when the tunnel is
// lost, and returns ErrInactive when it closes for inactivity.
func TestRun(t *testing.T) {
	checkLeaks(t)
	h := start(t, false, tunnel.ServerConfig{})
	cfg := h.config(31, h.bind(t, 31), hello("31"))
	cfg.Inactivity = 500 * time.Millisecond
	var slept []time.Duration
	var mu sync.Mutex
	b := tunnel.Backoff{
		Base: time.Hour, // a real wait would hang the test
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			slept = append(slept, d)
			mu.Unlock()
			return ctx.Err()
		},
	}
	done := make(chan error, 1)
	go func() { done <- tunnel.Run(t.Context(), cfg, b) }()

	first, err := h.srv.Wait(t.Context(), 31)
	if err != nil {
		t.Fatal(err)
	}
	_ = first.Close()
	<-first.Done()
	if e := h.waitClose(t); e.reason != "closed by the server" {
		t.Fatalf("%+v", e)
	}
	second, err := h.srv.Wait(t.Context(), 31)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("no redial")
	}
	select {
	case err := <-done:
		if !errors.Is(err, tunnel.ErrInactive) {
			t.Fatalf("Run = %v, want ErrInactive", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end on inactivity")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(slept) != 1 || slept[0] >= time.Hour {
		t.Errorf("slept %v, want one wait under Base", slept)
	}
}

// Run backs off further on each failed dial, and returns when ctx ends or
// on an error a redial cannot fix.
func TestRunBackoff(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + ln.Addr().String() + "/tunnel"
	_ = ln.Close() // nothing listens there now

	h := start(t, false, tunnel.ServerConfig{})
	cfg := h.config(41, h.bind(t, 41), hello(""))
	cfg.URL = dead
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var slept []time.Duration
	b := tunnel.Backoff{
		Base: time.Second, Max: 10 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			slept = append(slept, d)
			if len(slept) == 8 {
				cancel()
			}
			return ctx.Err()
		},
	}
	if err := tunnel.Run(ctx, cfg, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want canceled", err)
	}
	for i, d := range slept {
		if ceil := min(10*time.Second, time.Second<<i); d < 0 || d >= ceil {
			t.Errorf("wait %d = %v, want in [0, %v)", i, d, ceil)
		}
	}

	cfg = h.config(41, h.bind(t, 41), hello(""))
	cfg.HostKeyFingerprint = "SHA256:wrong"
	b.Sleep = func(context.Context, time.Duration) error {
		t.Error("Run redialed after a host key mismatch")
		return nil
	}
	if err := tunnel.Run(t.Context(), cfg, b); !errors.Is(err, tunnel.ErrHostKey) {
		t.Fatalf("Run = %v, want ErrHostKey", err)
	}
}
