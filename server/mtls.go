package server

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// codeClientCertRequired is the edge error code for a request that came
// without a client certificate from --client-ca.
const codeClientCertRequired = "client_certificate_required"

// loadClientCAs reads the PEM certificates of path (--client-ca) into a pool.
// A file without a single certificate is an error: an empty pool would refuse
// every device.
func loadClientCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no PEM CERTIFICATE block in the file")
	}
	return pool, nil
}

// requireClientCert wraps the edge endpoints when a client CA is configured:
// a request without a verified client certificate chain gets a 403. The TLS
// layer only asks for a certificate (the UI and API share the port and
// browsers have none), and refuses one that does not verify; this is where
// having none is refused. Other routes, or no client CA, pass h unchanged.
func (s *Server) requireClientCert(rt route, h http.Handler) http.Handler {
	_, path, ok := strings.Cut(rt.pattern, " ")
	if !ok {
		path = rt.pattern
	}
	if s.cfg.clientCAs == nil || rt.perm != permPublic || !strings.HasPrefix(path, "/edge/") {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			s.log.Info("edge request without a client certificate refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			s.edgeError(w, http.StatusForbidden, codeClientCertRequired,
				"this server requires a client certificate issued by its client CA (--client-ca): set EDGE_CLIENT_CERT and EDGE_CLIENT_KEY on the agent")
			return
		}
		h.ServeHTTP(w, r)
	})
}
