package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"outpost/protocol"
)

// TestFramesShutdownClosesIdleConnections: Shutdown does not wait for an
// agent's kept frame connection.
func TestFramesShutdownClosesIdleConnections(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := hs.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(start))
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the idle frame connection is still open after Shutdown")
	}
}

// TestFramesShutdownClosesAConnectionReadingAHead: a connection that has
// sent part of its next frame's head is still idle for Shutdown, as an
// HTTP/1.1 connection reading its next request's head is for net/http:
// Shutdown ends it at once instead of waiting out the head's deadline, and
// the frame is not served.
func TestFramesShutdownClosesAConnectionReadingAHead(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	body, _, _ := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EnvID: 99, Include: protocol.IncludePing})
	out, _ := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: body})
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	if f, err := protocol.ReadFrame(br); err != nil || f.Status != http.StatusNotFound {
		t.Fatalf("first frame: %+v %v, want 404", f, err)
	}
	if _, err := c.Write(out[:1]); err != nil {
		t.Fatal(err)
	}
	// Nothing the test can poll changes when the server reads that byte.
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := hs.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v, with a connection that sent 1 byte of a frame's head", err, time.Since(start))
	}
	if _, err := c.Write(out[1:]); err == nil {
		if f, err := protocol.ReadFrame(br); err == nil {
			t.Errorf("the frame was served after Shutdown: %d %q", f.Status, f.Body)
		}
	}
}

// TestFramesCloseEndsAFrameBeingServed: a frame still in its handler when
// Shutdown times out (here, its body never comes) is ended by close, which
// returns once the handler has: Run closes the store after it, and no
// frame is served against a closed store.
func TestFramesCloseEndsAFrameBeingServed(t *testing.T) {
	s, _ := testServer(t)
	entered, returned := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		close(entered)
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	hs, fc := framesServerOf(t, s, h, nil)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	out, _ := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: make([]byte, 1<<20)})
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(out[:64<<10]); err != nil { // and the rest never
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the frame did not reach its handler")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := hs.Config.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want it to time out on the frame being served", err)
	}
	start := time.Now()
	fc.close(5 * time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("close took %v", took)
	}
	select {
	case <-returned:
	default:
		t.Fatal("close returned before the handler")
	}
	fc.mu.Lock()
	n := len(fc.conns)
	fc.mu.Unlock()
	if n != 0 {
		t.Errorf("%d frame connections left after close", n)
	}
	if f, err := protocol.ReadFrame(bufio.NewReader(c)); err == nil {
		t.Errorf("answered %d %q after close, want the connection closed", f.Status, f.Body)
	}
}
