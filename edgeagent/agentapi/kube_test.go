package agentapi_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"outpost/edgeagent/agentapi"
	"outpost/kube"
)

// TestKubeGatewayRefuses: the token endpoint makes no token for the
// environment administrator's role (they go with the agent's own
// credentials), nor for a malformed grant; a passthrough with neither a
// token nor "as the agent" is refused; a Docker agent has no gateway. None
// of these reach the cluster, which here does not exist.
func TestKubeGatewayRefuses(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	acc, err := kube.NewAccess(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	api, err := agentapi.New(agentapi.Config{Version: "test", Log: slog.New(slog.DiscardHandler), KubeConfig: cfg, KubeAccess: acc})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.Close() }()
	docker, err := agentapi.New(agentapi.Config{Version: "test", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = docker.Close() }()
	if _, err := agentapi.New(agentapi.Config{KubeConfig: cfg}); err == nil {
		t.Error("a Kubernetes config without its access keeper was taken")
	}
	for _, c := range []struct {
		h            http.Handler
		method, path string
		body         string
		want         int
	}{
		{api, "POST", "/v2/kubernetes/token", `{"env":1,"user":2,"role":"environment-administrator"}`, 400},
		{api, "POST", "/v2/kubernetes/token", `{"env":1,"user":2,"role":"root"}`, 400},
		{api, "POST", "/v2/kubernetes/token", `{"env":0,"user":2,"role":"operator"}`, 400},
		{api, "POST", "/v2/kubernetes/token", `not json`, 400},
		{api, "GET", "/v2/kubernetes/api/v1/pods", "", 403},
		{docker, "POST", "/v2/kubernetes/token", `{"env":1,"user":2,"role":"operator"}`, 404},
		{docker, "GET", "/v2/kubernetes/api/v1/pods", "", 404},
	} {
		w := httptest.NewRecorder()
		c.h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if w.Code != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, w.Code, w.Body, c.want)
		}
	}
}
