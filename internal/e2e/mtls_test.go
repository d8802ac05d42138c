//go:build integration

package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"outpost/internal/testenv"
)

// TestClientCAEndToEnd: outpost-server with --client-ca, one agent with a
// certificate from that CA and one without. The first binds and checks in;
// the second is refused with client_certificate_required and never binds.
// The API keeps working without a client certificate throughout.
func TestClientCAEndToEnd(t *testing.T) {
	testenv.RequireDocker(t)
	ca := testenv.NewCA(t, "fleet CA")
	cert := ca.Issue(t, "ship-7")
	srv := startServer(t, "--client-ca", ca.CertFile)

	good := srv.createEnvironment(t, "mtls-device", 1)
	startAgent(t, good.EdgeKey, t.TempDir(), "EDGE_CLIENT_CERT="+cert.CertFile, "EDGE_CLIENT_KEY="+cert.KeyFile)
	bare := srv.createEnvironment(t, "no-cert-device", 1)
	refused := startAgent(t, bare.EdgeKey, t.TempDir())

	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e environment
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", good.ID), nil, &e, http.StatusOK)
		return e.EdgeID != "" && e.LastCheckIn > 0, fmt.Sprintf("environment %+v", e)
	})
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		return len(refused.lines("client_certificate_required")) > 0, "the agent without a certificate has not logged client_certificate_required"
	})
	var e environment
	srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", bare.ID), nil, &e, http.StatusOK)
	if e.EdgeID != "" {
		t.Errorf("the agent without a client certificate bound environment %d: %+v", bare.ID, e)
	}
}
