package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"outpost/protocol"
)

// Names an operator gives, and the strings a device reports, refuse NUL,
// terminal escapes and other control characters, naming the field; printable
// text, accents included, is fine.
func TestControlCharactersAreRefused(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	env := stage(t, s, nil)
	for _, bad := range []string{"ship\x00", "\x1b[2Jship", "ship\u009b31m", "two\nlines", "ship\x7f"} {
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/api/environments", `{"name":%q}`},
			{"PATCH", "/api/environments/1", `{"name":%q}`},
			{"POST", "/api/tags", `{"name":%q}`},
			{"POST", "/api/edge-groups", `{"name":%q}`},
			{"POST", "/api/environment-groups", `{"name":%q}`},
			{"POST", "/api/teams", `{"name":%q}`},
			{"POST", "/api/edge-jobs", `{"name":%q,"cron":"@hourly","script":"true","environmentIds":[1]}`},
		} {
			status, b := call(t, hs, c.method, c.path, tok, rawJSON(strings.Replace(c.body, "%q", jsonString(bad), 1)))
			if status != http.StatusBadRequest || !strings.Contains(string(b), "control character") {
				t.Errorf("%s %s with name %q: %d %s", c.method, c.path, bad, status, b)
			}
		}
	}
	var ok createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]string{"name": "Schiff Ålesund 7 ☸"}, &ok, http.StatusCreated)

	d := newDevice(t, hs.Config.Handler, env, "edge-1")
	req := d.firstContact()
	req.Agent.Hostname = "gw\x1b]0;owned\x07"
	if status, _, perr := d.sync(req); status != http.StatusBadRequest || perr.Code != protocol.CodeLimit || !strings.Contains(perr.Message, "control character") {
		t.Fatalf("a hostname with an escape: %d %+v", status, perr)
	}
}

// rawJSON sends s as the body as it is.
func rawJSON(s string) json.RawMessage { return json.RawMessage(s) }

// jsonString is s as a JSON string, escapes and all.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
