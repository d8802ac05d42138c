package edgeagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"outpost/protocol"
)

// client speaks the edge protocol to the server over one kept-alive HTTPS
// connection with as few header bytes as net/http allows.
type edgeClient struct {
	base string
	http *http.Client
}

// newClient makes the client for serverURL. cert, if not nil, is the device's client certificate for a server that
// requires one (--client-ca). Go sends it only when the server's list of
// acceptable CAs names its issuer; otherwise the server answers
// client_certificate_required.
func newClient(serverURL string, insecure bool, cert *tls.Certificate, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *edgeClient {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tc := &tls.Config{
		InsecureSkipVerify: insecure, //nolint:gosec // EDGE_INSECURE_POLL=1: the operator chose a self-signed server
		// X25519 alone: Go's default adds a post-quantum key share of
		// over 1 KB to each handshake, paid for on metered links.
		CurvePreferences:   []tls.CurveID{tls.X25519},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		MinVersion:         tls.VersionTLS12,
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tc,
		DisableCompression:  true, // bodies are zstd already; saves Accept-Encoding
		MaxIdleConns:        1,
		IdleConnTimeout:     10 * time.Minute,
		TLSHandshakeTimeout: 60 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &edgeClient{base: serverURL, http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// post sends req to path, decodes the answer into ans and returns the
// answer's CBOR as received, which its tag covers. A refusal by the server
// comes back as *protocol.Error.
//
// A body whose CBOR is larger than protocol.MaxUnprovedBody goes with the
// body proof prove gives for it (none if prove is nil or gives ""): the
// server inflates nothing larger from a sender it does not know.
func (c *edgeClient) post(ctx context.Context, path string, req, ans any, prove func(body []byte) string) ([]byte, error) {
	body, enc, rawLen, err := protocol.EncodeBody(req)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", protocol.ContentType)
	hr.Header.Set("User-Agent", "") // not sent
	if enc != "" {
		hr.Header.Set("Content-Encoding", enc)
	}
	if rawLen > protocol.MaxUnprovedBody && prove != nil {
		if v := prove(body); v != "" {
			hr.Header.Set(protocol.BodyProofHeader, v)
		}
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxCompressedBody+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	renc := resp.Header.Get("Content-Encoding")
	if resp.StatusCode != http.StatusOK {
		var pe protocol.Error
		if err := protocol.ReadBody(rb, renc, &pe); err != nil || pe.Code == "" {
			return nil, fmt.Errorf("server answered %s", resp.Status)
		}
		return nil, &pe
	}
	raw, err := protocol.Inflate(rb, renc)
	if err == nil {
		err = protocol.Unmarshal(raw, ans)
	}
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return raw, nil
}
