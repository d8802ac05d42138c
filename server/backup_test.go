package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

// backupUser stores a user and logs in through the API, returning its token.
func backupUser(t *testing.T, s *Server, client *http.Client, url, name, role, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if s != nil {
		if err := s.store.CreateUser(&store.User{Username: name, PasswordHash: hash, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(map[string]string{"username": name, "password": password})
	resp, err := client.Post(url+"/api/auth", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %d %v", name, resp.StatusCode, err)
	}
	return ans.Token
}

// get sends an authenticated GET and returns the answer, body read.
func get(t *testing.T, client *http.Client, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// seqSnapshot is snapshot seq's content: the engine's hostname names the seq,
// so a reader can tell which write it sees.
func seqSnapshot(t *testing.T, seq uint64) []byte {
	d := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: fmt.Sprintf("seq-%d", seq)}}
	for i := range 100 {
		d.Containers = append(d.Containers, snapshot.Container{ID: fmt.Sprintf("%064d", i), Name: fmt.Sprintf("c-%d", i), Image: "busybox"})
	}
	b, err := protocol.Marshal(d)
	if err != nil {
		t.Error(err)
	}
	return b
}

// The restore test: take a backup through GET /api/backup while snapshots
// keep being written, put it in a fresh data dir as outpost.db, start a
// server on it, and read the data back through the API. While that server
// runs, `outpost-server backup` of its data dir is refused with the way out;
// once it stops, it works.
func TestBackupWhileWritingThenRestore(t *testing.T) {
	s, hs := testServer(t)
	admin := backupUser(t, s, hs.Client(), hs.URL, "admin", RoleAdmin, "admin-password")
	helpdesk := backupUser(t, s, hs.Client(), hs.URL, "desk", RoleHelpdesk, "desk-password")
	e := &store.Environment{Name: "ship-7", Mode: store.ModeAsync, Trusted: true, Created: 1790000000}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}

	var (
		seq     atomic.Uint64
		started = make(chan struct{}) // closed after 10 writes
		stop    = make(chan struct{})
		done    = make(chan error, 1)
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := seq.Add(1)
			sn := &store.Snapshot{Seq: n, Kind: "full", Updated: 1790000000 + int64(n), Data: seqSnapshot(t, n)}
			if err := s.store.PutSnapshot(e.ID, sn, &store.HistoryEntry{Seq: n, Kind: "full", Bytes: len(sn.Data), At: sn.Updated}); err != nil {
				done <- err
				return
			}
			if n == 10 {
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("writer: %v", err)
	}

	if resp, b := get(t, hs.Client(), hs.URL+"/api/backup", helpdesk); resp.StatusCode != http.StatusForbidden {
		t.Errorf("backup as helpdesk: %d %s, want 403", resp.StatusCode, b)
	}
	resp, body := get(t, hs.Client(), hs.URL+"/api/backup", admin)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backup: %d %s", resp.StatusCode, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="outpost-`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	if got := resp.Header.Get("Content-Length"); got != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length %s, body %d bytes", got, len(body))
	}

	// Restore: the backup becomes outpost.db of a fresh data dir.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "outpost.db"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(ctx, Config{
			DataDir: dir, Bind: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, func(url string) { ready <- url })
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-runErr:
		t.Fatalf("server on the restored store: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server on the restored store did not start in 30 s")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	tok := backupUser(t, nil, client, url, "admin", RoleAdmin, "admin-password")

	resp, b := get(t, client, fmt.Sprintf("%s/api/environments/%d/snapshot", url, e.ID), tok)
	var sv struct {
		Seq      uint64
		Snapshot snapshot.Snapshot
	}
	if err := json.Unmarshal(b, &sv); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("restored snapshot: %d %s", resp.StatusCode, b)
	}
	if sv.Seq < 10 || sv.Snapshot.Engine.Hostname != fmt.Sprintf("seq-%d", sv.Seq) || len(sv.Snapshot.Containers) != 100 {
		t.Errorf("restored snapshot seq %d holds %q and %d containers", sv.Seq, sv.Snapshot.Engine.Hostname, len(sv.Snapshot.Containers))
	}
	resp, b = get(t, client, fmt.Sprintf("%s/api/environments/%d/snapshot/history", url, e.ID), tok)
	var hist []store.HistoryEntry
	if err := json.Unmarshal(b, &hist); err != nil || resp.StatusCode != http.StatusOK || len(hist) == 0 {
		t.Fatalf("restored history: %d %s", resp.StatusCode, b)
	}
	if last := hist[len(hist)-1].Seq; last != sv.Seq {
		t.Errorf("restored store is not one moment: snapshot %d, history up to %d", sv.Seq, last)
	}
	if resp, b := get(t, client, fmt.Sprintf("%s/api/environments/%d", url, e.ID), tok); resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"ship-7"`)) {
		t.Errorf("restored environment: %d %s", resp.StatusCode, b)
	}

	// The CLI backup of a running server's data dir goes through the
	// server's control socket, and gives the same consistent copy.
	live := filepath.Join(t.TempDir(), "live.db")
	if n, err := Backup(context.Background(), dir, live); err != nil || n == 0 {
		t.Fatalf("CLI backup of a running server: %d bytes, %v", n, err)
	}
	lc, err := store.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	if sn, err := lc.Snapshot(e.ID); err != nil || sn.Seq != sv.Seq {
		t.Errorf("CLI backup of a running server: snapshot %+v %v, want seq %d", sn, err, sv.Seq)
	}
	if err := lc.Close(); err != nil {
		t.Fatal(err)
	}

	// A locked store with nobody answering on the socket says what to do.
	if err := os.Rename(filepath.Join(dir, controlSocket), filepath.Join(dir, "moved.sock")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	_, err = Backup(context.Background(), dir, out)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "use GET /api/backup (administrator) or stop it first") {
		t.Errorf("CLI backup of a running server without its socket: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Errorf("refused CLI backup left %d files, first %s", len(left), left[0].Name())
	}

	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("server on the restored store: %v", err)
	}
	n, err := Backup(context.Background(), dir, out)
	if err != nil {
		t.Fatalf("CLI backup of a stopped server: %v", err)
	}
	c, err := store.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if sn, err := c.Snapshot(e.ID); err != nil || sn.Seq != sv.Seq {
		t.Errorf("CLI backup (%d bytes): snapshot %+v %v, want seq %d", n, sn, err, sv.Seq)
	}
}

func TestBackupCLIRefusals(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Backup(ctx, dir, filepath.Join(dir, "b.db")); err == nil || !strings.Contains(err.Error(), "no store at") {
		t.Errorf("backup of an empty dir: %v", err)
	}
	st, err := store.Open(filepath.Join(dir, "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(ctx, dir, ""); err == nil {
		t.Error("backup without --out: no error")
	}
	if _, err := Backup(ctx, dir, filepath.Join(dir, ".", "outpost.db")); err == nil || !strings.Contains(err.Error(), "is the store itself") {
		t.Errorf("backup onto the store: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	out := filepath.Join(t.TempDir(), "b.db")
	if _, err := Backup(cctx, dir, out); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled backup: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Errorf("cancelled backup left %s", left[0].Name())
	}
}
