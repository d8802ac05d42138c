package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"outpost/protocol"
)

// api is the simulator's client of the server's REST API, as an operator's
// script would use it.
type api struct {
	base  string
	token string
	http  *http.Client
}

func newAPI(base string) *api {
	return &api{base: base, http: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the server's self-signed certificate
		// The command, tunnel-opening and tunnel request workers.
		MaxIdleConnsPerHost: 96,
	}}}
}

// call sends body as JSON and decodes the answer into out, with an error
// for any status but want.
func (a *api) call(ctx context.Context, method, path string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (a *api) login(ctx context.Context, user, password string) error {
	var ans struct{ Token string }
	if err := a.call(ctx, "POST", "/api/auth", map[string]string{"username": user, "password": password}, &ans, http.StatusOK); err != nil {
		return fmt.Errorf("log in as %s: %w", user, err)
	}
	a.token = ans.Token
	return nil
}

// staged is one pre-staged environment.
type staged struct {
	ID      uint64 `json:"id"`
	EdgeKey string `json:"edgeKey"`
}

// bulkChunk is how many environments one bulk call stages.
const bulkChunk = 5000

// stage pre-stages n environments of mode (async or standard) at freq,
// named name-1-1 ..., in bulk calls (POST /api/environments/bulk).
func (a *api) stage(ctx context.Context, name, mode string, n int, freq protocol.Frequencies) ([]staged, error) {
	var out []staged
	for len(out) < n {
		k := min(bulkChunk, n-len(out))
		var ans struct{ Items []staged }
		err := a.call(ctx, "POST", "/api/environments/bulk", map[string]any{
			"name": fmt.Sprintf("%s-%d", name, len(out)/bulkChunk+1), "mode": mode, "count": k, "frequencies": freq,
		}, &ans, http.StatusCreated)
		if err != nil {
			return nil, fmt.Errorf("stage %s environments: %w", mode, err)
		}
		if len(ans.Items) != k {
			return nil, fmt.Errorf("stage %s environments: asked for %d, got %d", mode, k, len(ans.Items))
		}
		out = append(out, ans.Items...)
	}
	return out, nil
}

// queue queues a container.restart of container on environment env and
// returns the command's ID.
func (a *api) queue(ctx context.Context, env uint64, container string) (uint64, error) {
	var c struct{ ID uint64 }
	err := a.call(ctx, "POST", fmt.Sprintf("/api/environments/%d/commands", env),
		map[string]any{"kind": "container.restart", "args": map[string]string{"id": container}}, &c, http.StatusAccepted)
	return c.ID, err
}

// openTunnel asks environment env's device for its tunnel and returns once
// the server holds it (the server waits up to two poll intervals).
func (a *api) openTunnel(ctx context.Context, env uint64) error {
	return a.call(ctx, "POST", fmt.Sprintf("/api/environments/%d/tunnel", env), nil, nil, http.StatusOK)
}

// through GETs path of environment env's device through the server and
// its tunnel (/api/environments/{id}/docker/... or .../agent/...), and
// returns the answer's body bytes; any status but 200 and 204 is an error.
func (a *api) through(ctx context.Context, env uint64, path string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := fmt.Sprintf("/api/environments/%d/%s", env, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+p, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", p, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: read answer: %w", p, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return n, fmt.Errorf("GET %s: status %d", p, resp.StatusCode)
	}
	return n, nil
}

// createEdgeGroup makes a static edge group of envs and returns its ID.
func (a *api) createEdgeGroup(ctx context.Context, name string, envs []uint64) (uint64, error) {
	var g struct{ ID uint64 }
	err := a.call(ctx, "POST", "/api/edge-groups", map[string]any{"name": name, "environmentIds": envs}, &g, http.StatusCreated)
	if err != nil {
		return 0, fmt.Errorf("create edge group %s: %w", name, err)
	}
	return g.ID, nil
}

// createStack makes a compose edge stack targeting edge group group and
// returns its ID and version.
func (a *api) createStack(ctx context.Context, name, compose string, group uint64) (id, version uint64, err error) {
	var st struct{ ID, Version uint64 }
	err = a.call(ctx, "POST", "/api/edge-stacks", map[string]any{"name": name, "composeFile": compose, "edgeGroupIds": []uint64{group}}, &st, http.StatusCreated)
	if err != nil {
		return 0, 0, fmt.Errorf("create edge stack %s: %w", name, err)
	}
	return st.ID, st.Version, nil
}
