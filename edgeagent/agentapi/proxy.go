package agentapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/moby/moby/client"
)

// newProxy returns the Engine API passthrough: a reverse proxy whose
// transport dials the engine the way cli does (unix socket, tcp, TLS from the
// environment), and that transport.
func (a *API) newProxy() (*httputil.ReverseProxy, *http.Transport, error) {
	u, err := client.ParseHostURL(a.cli.DaemonHost())
	if err != nil {
		return nil, nil, err
	}
	// The engine ignores Host on its socket; the client sends this one.
	target := &url.URL{Scheme: "http", Host: client.DummyHost}
	if u.Scheme == "tcp" {
		target.Host, target.Path = u.Host, u.Path
	}
	dial := a.cli.Dialer()
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConns:        16,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		// Pass Accept-Encoding and the engine's encoding through unchanged.
		DisableCompression: true,
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
		},
		Transport: tr,
		// Logs follow, events and stats stream: every write goes out at once.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case a.ctx.Err() != nil:
				writeError(w, http.StatusServiceUnavailable, "agent API closed")
			case r.Context().Err() != nil:
				// The caller left; nobody reads an answer.
			default:
				a.log.Warn("docker passthrough", "method", r.Method, "path", r.URL.Path, "err", err)
				writeError(w, http.StatusBadGateway, "docker engine at %s: %v", a.cli.DaemonHost(), err)
			}
		},
	}
	return p, tr, nil
}

// passthroughWriter is the ResponseWriter the proxy sees. Its Hijack returns a
// connection that first yields the bytes the server had already read past the
// request: a client may send stdin right behind an Upgrade request, and
// ReverseProxy reads only the raw connection after a switch of protocols.
type passthroughWriter struct {
	http.ResponseWriter
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w passthroughWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hijacks the underlying connection.
func (w passthroughWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("passthrough: hijack: %w", err)
	}
	if brw.Reader.Buffered() > 0 {
		conn = &bufferedConn{Conn: conn, br: brw.Reader}
	}
	return conn, brw, nil
}

// bufferedConn reads br's buffered bytes, then conn. br must not be read past
// its buffer: after a hijack, the server's reader under it panics.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.br == nil {
		return c.Conn.Read(p)
	}
	if n := c.br.Buffered(); len(p) > n {
		p = p[:n]
	}
	n, err := c.br.Read(p)
	if c.br.Buffered() == 0 {
		c.br = nil
	}
	return n, err
}

// CloseWrite half-closes the connection, so the engine's EOF on a hijacked
// stream reaches the client as one.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("passthrough: close write on %T: %w", c.Conn, errors.ErrUnsupported)
}
