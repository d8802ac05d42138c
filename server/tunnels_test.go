package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/tunnel"
)

// standardDevice stages a standard environment and binds a scripted device.
func standardDevice(t *testing.T, s *Server, h http.Handler) *device {
	t.Helper()
	e := &store.Environment{Name: "std", Mode: store.ModeStandard, Trusted: true, Frequencies: &protocol.Frequencies{Ping: 1}, EnrollKey: protocol.EnrollKey(testSecret)}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	s.indexEnvironment(e)
	d := newDevice(t, h, e.ID, "std-"+fmt.Sprint(e.ID))
	if status, _, perr := d.sync(d.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	return d
}

// poll posts a poll as a standard agent does.
func (d *device) poll() *protocol.SyncAnswer {
	d.t.Helper()
	req := d.ping()
	req.Include |= protocol.IncludeCommands
	if req.Proof == nil {
		req.Proof = &protocol.Proof{}
	}
	d.counter++
	req.Proof.Counter = d.counter
	if err := protocol.Seal(req, req.Proof, func(in []byte) []byte { return protocol.MAC(d.mac, in) }); err != nil {
		d.t.Fatal(err)
	}
	body, enc, err := protocol.WriteBody(req)
	if err != nil {
		d.t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/edge/v1/poll", strings.NewReader(string(body)))
	r.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		r.Header.Set("Content-Encoding", enc)
	}
	w := httptest.NewRecorder()
	d.h.ServeHTTP(w, r)
	var ans protocol.SyncAnswer
	if w.Code != http.StatusOK {
		d.t.Fatalf("poll: %d %s", w.Code, w.Body)
	}
	raw, err := protocol.Inflate(w.Body.Bytes(), w.Header().Get("Content-Encoding"))
	if err == nil {
		err = protocol.Unmarshal(raw, &ans)
	}
	if err != nil {
		d.t.Fatal(err)
	}
	d.verifyAnswer(&ans, req.Proof.Counter)
	return &ans
}

func (d *device) signer(t *testing.T) ssh.Signer {
	s, err := ssh.NewSignerFromKey(d.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTunnelAuthorizationAndProxy(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	_, helpdesk := addUser(t, s, "help", RoleHelpdesk, "pw")
	dev := standardDevice(t, s, hs.Config.Handler)
	async := bound(t, s, hs.Config.Handler, "async-1")
	ts := httptest.NewServer(s.tunnels.srv)
	t.Cleanup(ts.Close)
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/tunnel"

	// Nothing asked: the poll says idle.
	if ans := dev.poll(); ans.Tunnel != protocol.TunnelIdle || ans.Freq == nil || ans.Freq.Ping != 1 {
		t.Fatalf("idle poll: tunnel %d, freq %+v", ans.Tunnel, ans.Freq)
	}
	dial := func(user string, key ssh.Signer) (*tunnel.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return tunnel.Dial(ctx, tunnel.ClientConfig{
			URL: url, User: user, Signer: key, HostKeyFingerprint: s.fingerprint,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Path", r.URL.Path)
				w.Header().Set("X-Credentials", r.Header.Get("Cookie")+r.Header.Get("Authorization"))
				http.SetCookie(w, &http.Cookie{Name: "planted", Value: "by the device"})
				_, _ = io.WriteString(w, "agent says hi")
			}),
		})
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	strangerKey, _ := ssh.NewSignerFromKey(stranger)
	for name, try := range map[string]func() (*tunnel.Client, error){
		"a copied edge key without the identity key": func() (*tunnel.Client, error) { return dial(fmt.Sprint(dev.env), strangerKey) },
		"an async environment":                       func() (*tunnel.Client, error) { return dial(fmt.Sprint(async.env), async.signer(t)) },
		"an unknown environment":                     func() (*tunnel.Client, error) { return dial("999", dev.signer(t)) },
	} {
		if c, err := try(); !errors.Is(err, tunnel.ErrRefused) {
			if c != nil {
				_ = c.Close()
			}
			t.Errorf("%s: err %v, want refused", name, err)
		}
	}

	// An operator asks; the next poll says required; the device dials; the
	// API call returns once the tunnel is up.
	opened := make(chan int, 1)
	go func() {
		status, _ := call(t, hs, "POST", fmt.Sprintf("/api/environments/%d/tunnel", dev.env), tok, nil)
		opened <- status
	}()
	var ans *protocol.SyncAnswer
	deadline := time.Now().Add(10 * time.Second)
	for ans = dev.poll(); ans.Tunnel != protocol.TunnelRequired && time.Now().Before(deadline); ans = dev.poll() {
		time.Sleep(20 * time.Millisecond) // the POST above has not marked it yet
	}
	if ans.Tunnel != protocol.TunnelRequired {
		t.Fatalf("poll after the request: tunnel %d", ans.Tunnel)
	}
	c, err := dial(fmt.Sprint(dev.env), dev.signer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if status := <-opened; status != http.StatusOK {
		t.Fatalf("POST tunnel: %d", status)
	}
	if ans := dev.poll(); ans.Tunnel != protocol.TunnelActive {
		t.Fatalf("poll with the tunnel up: %d", ans.Tunnel)
	}
	status, body := call(t, hs, "GET", fmt.Sprintf("/api/environments/%d/docker/containers/json?all=1", dev.env), tok, nil)
	if status != http.StatusOK || string(body) != "agent says hi" {
		t.Fatalf("docker proxy: %d %s", status, body)
	}
	if status, _ := call(t, hs, "GET", fmt.Sprintf("/api/environments/%d/docker/containers/json", dev.env), helpdesk, nil); status != http.StatusForbidden {
		t.Fatalf("helpdesk reached the live Docker API: %d", status)
	}
	req, _ := http.NewRequest("GET", hs.URL+fmt.Sprintf("/api/environments/%d/agent/host/info", dev.env), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Cookie", "outpost_token="+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Path"); got != "/v2/host/info" {
		t.Fatalf("agent proxy reached %q", got)
	}
	// The operator's credentials never reach the device, and what the
	// device answers sets no cookie on the server's origin.
	if got := resp.Header.Get("X-Credentials"); got != "" {
		t.Fatalf("the device saw the operator's credentials: %q", got)
	}
	if resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Content-Security-Policy") != "sandbox" {
		t.Fatalf("proxied answer headers: %v", resp.Header)
	}
	// The Docker route does not reach the agent API, and no path leaves
	// the agent API's prefix.
	for path, want := range map[string]int{
		fmt.Sprintf("/api/environments/%d/docker/v2/browse/ls", dev.env):               http.StatusNotFound,
		fmt.Sprintf("/api/environments/%d/docker/x/..%%2F..%%2Fv2/host/info", dev.env): http.StatusNotFound,
		fmt.Sprintf("/api/environments/%d/agent/..%%2Fcontainers/json", dev.env):       http.StatusBadRequest,
	} {
		if status, body := call(t, hs, "GET", path, tok, nil); status != want {
			t.Errorf("%s: %d %s, want %d", path, status, body, want)
		}
	}
	if status, _ := call(t, hs, "GET", fmt.Sprintf("/api/environments/%d/docker/_ping", async.env), tok, nil); status != http.StatusConflict {
		t.Fatalf("proxy without a tunnel: %d", status)
	}

	// An environment no longer trusted gets no tunnel, even with its key.
	_ = c.Close()
	if _, err := s.store.UpdateEnvironment(dev.env, func(e *store.Environment) error { e.Trusted = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, err := dial(fmt.Sprint(dev.env), dev.signer(t)); !errors.Is(err, tunnel.ErrRefused) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("untrusted: err %v, want refused", err)
	}
}
