package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/tunnel"
)

// A device reports only on what the server sent it: runs of a job that
// does not target its environment are dropped.
func TestJobRunsOnlyFromTargets(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a, b := bound(t, s, hs.Config.Handler, "a"), bound(t, s, hs.Config.Handler, "b")
	var j jobView
	apiJSON(t, hs, "POST", "/api/edge-jobs", tok, map[string]any{"name": "j", "cron": "@hourly", "script": "true\n", "environmentIds": []uint64{a.env}}, &j, http.StatusCreated)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	b.pull(s, nil, nil, []protocol.JobResult{{JobID: j.ID, Run: 1, Started: 1_800_000_000, Output: []byte("forged")}})
	if runs, _ := s.store.JobRuns(j.ID, 10); len(runs) != 0 {
		t.Fatalf("runs stored from an environment the job does not target: %+v", runs)
	}
}

// Reports past the bounds are refused whole, with a limit error naming them.
func TestReportBounds(t *testing.T) {
	s, hs := testServer(t)
	a := bound(t, s, hs.Config.Handler, "a")
	for name, fill := range map[string]func(*protocol.SyncRequest){
		"stack statuses": func(r *protocol.SyncRequest) {
			r.StackStatuses = make([]protocol.StackStatus, maxReportStacks+1)
		},
		"job results": func(r *protocol.SyncRequest) {
			r.JobResults = make([]protocol.JobResult, maxReportJobs+1)
		},
		"jobResults[0].output": func(r *protocol.SyncRequest) {
			r.JobResults = []protocol.JobResult{{JobID: 1, Run: 1, Output: bytes.Repeat([]byte("x"), maxReportTail+1)}}
		},
		"stackStatuses[0].error": func(r *protocol.SyncRequest) {
			r.StackStatuses = []protocol.StackStatus{{StackID: 1, Error: strings.Repeat("e", maxReportError+1)}}
		},
	} {
		req := a.ping()
		fill(req)
		status, _, perr := a.sync(req)
		if status != http.StatusBadRequest || perr == nil || perr.Code != protocol.CodeLimit || !strings.Contains(perr.Message, name) {
			t.Errorf("%s: %d %+v", name, status, perr)
		}
	}
}

// An ack whose effects were lost (the server stopped between recording the
// ack and moving the job target) moves it when the device sends it again.
func TestDuplicateAckMovesWhatTheFirstDidNot(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var j jobView
	apiJSON(t, hs, "POST", "/api/edge-jobs", tok, map[string]any{"name": "j", "cron": "@hourly", "script": "true\n", "environmentIds": []uint64{a.env}}, &j, http.StatusCreated)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans := a.pull(s, nil, nil, nil)
	a.pull(s, okAcks(ans.Commands), nil, nil)
	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/edge-jobs/%d", j.ID), tok, nil, nil, http.StatusNoContent)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans = a.pull(s, nil, nil, nil)
	// The ack lands, its effect does not (a crash in between).
	if _, err := s.store.AckCommands(a.env, []store.Ack{{ID: ans.Commands[0].ID, OK: true}}, 1); err != nil {
		t.Fatal(err)
	}
	a.pull(s, okAcks(ans.Commands), nil, nil)
	if left, _ := s.store.JobTargets(j.ID); len(left) != 0 {
		t.Fatalf("the job target stayed after the ack came again: %+v", left)
	}
}

// The reconciler does not bring back an environment deleted while it ran.
func TestReconcilerSkipsADeletedEnvironment(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "g", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{"name": "web", "composeFile": testCompose, "edgeGroupIds": []uint64{g.ID}}, nil, http.StatusCreated)
	// Deleted in the store, still in the index: the reconciler's view.
	if err := s.store.DeleteEnvironment(a.env); err != nil {
		t.Fatal(err)
	}
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.store.StackStatuses(0); len(st) != 0 {
		t.Fatalf("statuses for a deleted environment: %+v", st)
	}
	if p, _ := s.store.PendingCommands(a.env, 10); len(p) != 0 {
		t.Fatalf("commands for a deleted environment: %+v", p)
	}
}

// A tunnel asked for while the last one is closing for inactivity (the
// server snapshotting through it) comes back after the close.
func TestTunnelRequestDuringInactivityClose(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	dev := standardDevice(t, s, hs.Config.Handler)
	ts := httptest.NewServer(s.tunnels.srv)
	t.Cleanup(ts.Close)
	closing := make(chan struct{}, 1)
	c, err := tunnel.Dial(context.Background(), tunnel.ClientConfig{
		URL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/tunnel", User: fmt.Sprint(dev.env), Signer: dev.signer(t),
		HostKeyFingerprint: s.fingerprint, Inactivity: 300 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The server's last snapshot: slow, so a request lands meanwhile.
			select {
			case closing <- struct{}{}:
			default:
			}
			time.Sleep(time.Second)
			http.Error(w, "engine away", http.StatusServiceUnavailable)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	<-closing
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+fmt.Sprintf("/api/environments/%d/tunnel", dev.env), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.tunnelStatus(dev.env) != protocol.TunnelRequired {
		if time.Now().After(deadline) {
			t.Fatal("the request during the close was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Wait(); !errors.Is(err, tunnel.ErrInactive) {
		t.Fatalf("tunnel ended with %v, want inactivity", err)
	}
	if st := dev.poll().Tunnel; st != protocol.TunnelRequired {
		t.Fatalf("poll after the close: %d, want required", st)
	}
}
