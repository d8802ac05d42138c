package server

import (
	"bytes"
	"net/http"
	"testing"

	"outpost/protocol"
)

// TestBulkCreateEnvironments: POST /api/environments/bulk stages count
// environments as POST /api/environments does, each with its own edge key
// and enrollment secret (the store keeps only its hash); a bad count or
// mode is refused with every problem and nothing stored.
func TestBulkCreateEnvironments(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	var ans struct{ Items []bulkCreated }
	apiJSON(t, hs, "POST", "/api/environments/bulk", tok, map[string]any{
		"name": "sim", "mode": "async", "count": 3, "frequencies": map[string]int{"ping": 2, "snapshot": 2, "command": 2},
	}, &ans, http.StatusCreated)
	if len(ans.Items) != 3 {
		t.Fatalf("%d environments, want 3", len(ans.Items))
	}
	secrets := map[string]bool{}
	for i, it := range ans.Items {
		k, err := protocol.ParseEdgeKey(it.EdgeKey)
		if err != nil || k.EnvironmentID != it.ID || k.Secret == "" || secrets[k.Secret] {
			t.Fatalf("item %d: edge key %+v (%v) for id %d: want its id and a secret of its own", i, k, err, it.ID)
		}
		secrets[k.Secret] = true
		e, err := s.store.Environment(it.ID)
		if err != nil || e.Mode != "async" || !e.Trusted || e.Frequencies == nil || e.Frequencies.Ping != 2 ||
			!bytes.Equal(e.EnrollKey, protocol.EnrollKey(k.Secret)) || e.Name != "sim-"+string(rune('1'+i)) {
			t.Fatalf("stored environment %d: %+v %v", it.ID, e, err)
		}
	}
	var page environmentPage
	apiJSON(t, hs, "GET", "/api/environments?name=sim-", tok, nil, &page, http.StatusOK)
	if page.Total != 3 {
		t.Fatalf("the list shows %d of them, want 3", page.Total)
	}
	status, body := call(t, hs, "POST", "/api/environments/bulk", tok, map[string]any{"name": "x", "mode": "edge", "count": maxBulkEnvironments + 1})
	if status != http.StatusBadRequest || !bytes.Contains(body, []byte("count")) || !bytes.Contains(body, []byte("mode")) {
		t.Fatalf("bad count and mode: %d %s, want 400 naming both", status, body)
	}
	if all, _ := s.store.Environments(); len(all) != 3 {
		t.Fatalf("%d environments stored after a refused call, want 3", len(all))
	}
}
