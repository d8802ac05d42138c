package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// controlSocket is the unix socket in the data dir through which local tools
// reach a running server: `outpost-server backup` uses it while the server
// holds the store's lock. Its permission (0600, in a 0700 data dir) is its
// authentication: whoever may read the store may copy it.
const controlSocket = "control.sock"

// serveControl listens on the control socket until ctx ends.
func (s *Server) serveControl(ctx context.Context) (stop func(), err error) {
	path := filepath.Join(s.cfg.DataDir, controlSocket)
	_ = os.Remove(path) // left by a server that crashed; the store's lock says none runs now
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		s.sendBackup(w, r, "local backup (control socket)")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
		_ = os.Remove(path)
	}, nil
}

// backupThroughServer asks the server running on dataDir for a backup over
// its control socket and writes it to w.
func backupThroughServer(ctx context.Context, dataDir string, w io.Writer) (int64, error) {
	path := filepath.Join(dataDir, controlSocket)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://outpost/backup", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("control socket %s: %s", path, resp.Status)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, err
	}
	if want, perr := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); perr == nil && n != want {
		return n, errors.New("backup cut short")
	}
	return n, nil
}
