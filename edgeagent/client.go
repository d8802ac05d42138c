package edgeagent

import (
	"crypto/tls"

	"outpost/edgeagent/link"
)

// newClient is the agent's edge client for serverURL (edgeagent/link);
// dial, if not nil, replaces the TCP dialer (tests count bytes through it).
func newClient(serverURL string, insecure bool, cert *tls.Certificate, dial link.DialFunc) *link.Client {
	return link.New(serverURL, insecure, cert, dial)
}
