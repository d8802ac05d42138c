package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"outpost/protocol"
)

// Edge endpoints take only the protocol's content type: anything else is a
// 415 before the body is read.
func TestEdgeRefusesOtherContentTypes(t *testing.T) {
	s, _ := testServer(t)
	h := s.routes()
	for _, path := range []string{"/edge/v1/sync", "/edge/v1/poll"} {
		for _, ct := range []string{"", "application/json", "application/cbor", protocol.ContentType + "; x=1"} {
			r := httptest.NewRequest("POST", path, strings.NewReader("{}"))
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var pe protocol.Error
			if w.Code != http.StatusUnsupportedMediaType {
				t.Fatalf("%s with %q: %d, want 415", path, ct, w.Code)
			}
			if err := protocol.ReadBody(w.Body.Bytes(), w.Header().Get("Content-Encoding"), &pe); err != nil || !strings.Contains(pe.Message, protocol.ContentType) {
				t.Fatalf("%s with %q: answer %+v %v", path, ct, pe, err)
			}
		}
	}
}

// The UI and API answer with HSTS; edge answers do not carry its bytes.
func TestHSTSOnBrowserRoutesOnly(t *testing.T) {
	s, _ := testServer(t)
	h := s.routes()
	for path, want := range map[string]bool{"/healthz": true, "/login": true, "/api/environments": true, "/edge/v1/sync": false} {
		method := "GET"
		if strings.HasPrefix(path, "/edge/") {
			method = "POST"
		}
		r := httptest.NewRequest(method, path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("Strict-Transport-Security") != ""; got != want {
			t.Errorf("%s %s: HSTS %v, want %v (status %d)", method, path, got, want, w.Code)
		}
	}
}
