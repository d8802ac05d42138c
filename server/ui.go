package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
	"outpost/web"
)

// uiHandler is the web UI, mounted at the site root.
func (s *Server) uiHandler() http.Handler { return web.New(uiBackend{s}, s.log) }

// uiBackend is the server as package web sees it: the same store reads and
// sessions as the JSON API, turned into web's types.
type uiBackend struct{ s *Server }

var (
	_ web.Backend  = uiBackend{}
	_ web.Logouter = uiBackend{}
)

// Login is audited without a remote address: web.Backend does not pass the
// request (web logs the address itself).
func (b uiBackend) Login(username, password string) (string, error) {
	tok, err := b.s.login(username, password)
	if err != nil {
		b.s.audit(nil, "anonymous", auditLoginFailed, userTarget(username), "web UI")
	} else {
		b.s.audit(nil, username, auditLogin, userTarget(username), "web UI")
	}
	return tok, err
}

func (b uiBackend) Authenticate(token string) (string, bool) {
	ss, ok := b.s.sessions.lookup(token)
	return ss.user, ok
}

// Logout ends the session of token, so a logged-out cookie copied elsewhere
// is useless too.
func (b uiBackend) Logout(token string) {
	b.s.sessions.revoke(token)
}

func (b uiBackend) Environments() ([]web.Environment, error) {
	envs, err := b.s.store.Environments()
	if err != nil {
		return nil, fmt.Errorf("environments: %w", err)
	}
	out := make([]web.Environment, 0, len(envs))
	global := b.s.globalFrequencies()
	for i := range envs {
		out = append(out, b.env(&envs[i], global))
	}
	return out, nil
}

func (b uiBackend) Environment(id uint64) (web.Environment, error) {
	e, err := b.s.store.Environment(id)
	if err != nil {
		return web.Environment{}, fmt.Errorf("environment %d: %w", id, uiErr(err))
	}
	return b.env(e, b.s.globalFrequencies()), nil
}

func (b uiBackend) env(e *store.Environment, global protocol.Frequencies) web.Environment {
	v := b.s.view(e, global)
	out := web.Environment{
		ID: e.ID, Name: e.Name, Mode: e.Mode, Status: v.Status,
		EdgeID: e.EdgeID, EdgeKey: v.EdgeKey,
		Ping:     time.Duration(v.Effective.Ping) * time.Second,
		Snapshot: time.Duration(v.Effective.Snapshot) * time.Second,
		Command:  time.Duration(v.Effective.Command) * time.Second,
	}
	if v.LastCheckIn != 0 {
		out.LastCheckIn = time.Unix(v.LastCheckIn, 0)
	}
	if e.Agent != nil {
		out.AgentVersion, out.Hostname = e.Agent.Version, e.Agent.Hostname
	}
	return out
}

func (b uiBackend) Snapshot(id uint64) (*web.Snapshot, error) {
	sn, err := b.s.store.Snapshot(id)
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, uiErr(err))
	}
	d := &snapshot.Docker{}
	if err := protocol.Unmarshal(sn.Data, d); err != nil {
		return nil, fmt.Errorf("snapshot %d: decode stored snapshot: %w", id, err)
	}
	return &web.Snapshot{Seq: sn.Seq, Updated: time.Unix(sn.Updated, 0), Kind: sn.Kind, Docker: d}, nil
}

func (b uiBackend) History(id uint64) ([]web.HistoryEntry, error) {
	hist, err := b.s.store.History(id)
	if err != nil {
		return nil, fmt.Errorf("snapshot history %d: %w", id, uiErr(err))
	}
	out := make([]web.HistoryEntry, 0, len(hist))
	for _, h := range hist {
		out = append(out, web.HistoryEntry{Seq: h.Seq, Base: h.Base, Kind: h.Kind, Bytes: h.Bytes, At: time.Unix(h.At, 0)})
	}
	return out, nil
}

// uiErr maps the store's not-found to web's, keeping the rest as they are.
func uiErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return web.ErrNotFound
	}
	return err
}
