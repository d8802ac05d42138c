package server

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
)

// TestRestoreServesNoRequestFromBeforeIt: a request made after a backup,
// whose counter the restored floor no longer refuses, is answered with the
// resync nonce and nothing of it is applied; the real device confirms itself
// with one more exchange and goes on, and a replay is refused from then on.
func TestRestoreServesNoRequestFromBeforeIt(t *testing.T) {
	dir := t.TempDir()
	s, hs := testServerAt(t, dir)
	dev := bound(t, s, hs.Config.Handler, "ship")
	var backup bytes.Buffer
	if _, err := s.store.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	// Past the floor the backup holds (counter 1 + 1,000), as a device
	// does after a block skip.
	dev.counter = 1500
	c := &store.Command{Env: dev.env, Kind: "container.restart", Args: map[string]string{"id": "c1"}}
	if err := s.store.AddCommand(c); err != nil {
		t.Fatal(err)
	}
	req := dev.ping()
	req.Include |= protocol.IncludeCommands
	req.Acks = []protocol.CommandAck{{ID: c.ID, Status: protocol.StatusOK, Finished: 1}}
	if status, _, perr := dev.sync(req); status != http.StatusOK {
		t.Fatalf("ack before the restore: %d %+v", status, perr)
	}
	old, oldEnc := dev.last, dev.lastEnc // what an eavesdropper kept

	// The restore: the backup in the data dir, beside the live server's
	// generation file and key agreement key; the server starts on it.
	dir2 := t.TempDir()
	for _, f := range []string{"outpost.db.generation", "sync_dh.key"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir2, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir2, "outpost.db"), backup.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, hs2 := testServerAt(t, dir2)
	if !s2.store.Restored() {
		t.Fatal("the restored store is not known for one")
	}
	c2 := &store.Command{Env: dev.env, Kind: "container.restart", Args: map[string]string{"id": "c2"}}
	if err := s2.store.AddCommand(c2); err != nil {
		t.Fatal(err)
	}
	dev.h = hs2.Config.Handler
	status, ans, perr := dev.post(old, oldEnc)
	if status != http.StatusOK || ans == nil || ans.Resync == nil || len(ans.Commands) != 0 {
		t.Fatalf("the request from before the restore, again: %d %+v %+v", status, ans, perr)
	}
	if r, _ := s2.store.CommandResults(dev.env, 10); len(r) != 0 {
		t.Fatalf("the replayed ack was applied: %+v", r)
	}
	// The device asks, is told to confirm, echoes, and is served.
	status, ans, _ = dev.sync(dev.ping())
	if status != http.StatusOK || ans.Resync == nil {
		t.Fatalf("the device's first request after the restore: %d %+v", status, ans)
	}
	req = dev.ping()
	req.Include |= protocol.IncludeCommands
	req.Resync = ans.Resync
	status, ans, perr = dev.sync(req)
	if status != http.StatusOK || ans.Resync != nil || len(ans.Commands) != 1 || ans.Commands[0].ID != c2.ID {
		t.Fatalf("the device, echoing the nonce: %d %+v %+v", status, ans, perr)
	}
	if status, _, _ := dev.post(old, oldEnc); status != http.StatusForbidden {
		t.Fatalf("the old request after the device confirmed: %d", status)
	}
}
