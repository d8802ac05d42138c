package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"outpost/internal/corpus"
	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/server"
	"outpost/snapshot"
)

// TestAgentClientAgainstTheRealServer runs the agent's client against the
// real server on loopback, as the benchmark does in its namespaces: edge
// frames on a kept connection, one connection per exchange when the next is
// an hour away (resumed), and HTTP/1.1 still served to agents without
// frames.
func TestAgentClientAgainstTheRealServer(t *testing.T) {
	caps, err := corpus.Load("../../../testdata/docker")
	if err != nil {
		t.Fatal(err)
	}
	var d *snapshot.Snapshot
	for _, c := range caps {
		if len(c.Docker.Containers) >= 10 {
			d = c.Docker
			break
		}
	}
	if d == nil {
		t.Fatal("no capture of 10 containers or more")
	}
	ctx, cancel := context.WithCancel(context.Background())
	dir, tunnel := t.TempDir(), testenv.FreeAddr(t) // the edge key names the tunnel's port: not 0
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{
			DataDir: dir, Bind: "127.0.0.1:0", TunnelAddr: tunnel, MetricsAddr: server.MetricsOff,
			AdminPassword: "benchwire-test-password",
			Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, func(url string) { ready <- url })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not start")
	}
	keys, err := stage(ctx, url, "benchwire-test-password")
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		keys[i].ServerURL = url
	}

	o, err := newOutpost(keys[0], d)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []kind{kindIdle, kindFull, kindIdle, kindDelta, kindIdle} {
		if _, err := o.exchange(ctx, k); err != nil {
			t.Fatal(err)
		}
		o.after(time.Minute)
	}
	if !o.cl.Framed() || o.dialed() != 1 {
		t.Errorf("exchanges a minute apart: framed %v, %d dials; want frames on one connection", o.cl.Framed(), o.dialed())
	}
	o.after(time.Hour)
	for range 2 {
		if _, err := o.exchange(ctx, kindIdle); err != nil {
			t.Fatal(err)
		}
		o.after(time.Hour)
	}
	if !o.cl.Resumed() || o.dialed() != 3 {
		t.Errorf("hourly exchanges: resumed %v, %d dials in all; want a resumed connection each", o.cl.Resumed(), o.dialed())
	}

	// An agent from before frames: HTTP/1.1, no ALPN.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test certificate
	body, _, err := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EnvID: 999, Include: protocol.IncludePing})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+protocol.SyncPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", protocol.ContentType)
	resp, err := old.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	var pe protocol.Error
	if err := protocol.ReadBody(rb, resp.Header.Get("Content-Encoding"), &pe); err != nil || resp.ProtoMajor != 1 || pe.Code != protocol.CodeUnknownEnvironment {
		t.Errorf("HTTP/1.1 agent: %s %s %+v (%v), want HTTP/1.1 404 %s", resp.Proto, resp.Status, pe, err, protocol.CodeUnknownEnvironment)
	}
	old.CloseIdleConnections()
}
