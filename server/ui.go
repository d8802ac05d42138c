package server

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
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

// Login audits with the client's address; web logs the attempt itself.
func (b uiBackend) Login(username, password, remote string) (string, error) {
	tok, err := b.s.login(username, password, remote)
	var locked *loginLocked
	switch {
	case errors.As(err, &locked):
		b.s.auditRefusal(remote, "anonymous", auditLoginLocked, userTarget(username), "web UI: locked out")
	case err != nil:
		b.s.auditRefusal(remote, "anonymous", auditLoginFailed, userTarget(username), "web UI")
	default:
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

func (b uiBackend) Environment(id uint64) (web.Environment, error) {
	e, err := b.s.store.Environment(id)
	if err != nil {
		return web.Environment{}, fmt.Errorf("environment %d: %w", id, uiErr(err))
	}
	return b.env(e, b.s.edgeSettings()), nil
}

func (b uiBackend) env(e *store.Environment, set EdgeSettings) web.Environment {
	v := b.s.view(e, set)
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
	out.Platform = e.Platform // what it was created for, until its agent says
	if e.Agent != nil {
		out.AgentVersion, out.Hostname, out.Platform = e.Agent.Version, e.Agent.Hostname, cmp.Or(e.Agent.Platform, e.Platform)
	}
	if f := e.Frequencies; f != nil {
		out.OwnPing, out.OwnSnapshot, out.OwnCommand = f.Ping, f.Snapshot, f.Command
	}
	out.TagIDs, out.GroupID = e.TagIDs, e.GroupID
	f := b.s.fleetIndex()
	f.mu.RLock()
	for _, t := range e.TagIDs {
		if tag, ok := f.tags[t]; ok {
			out.Tags = append(out.Tags, tag.Name)
		}
	}
	if g, ok := f.envGroups[e.GroupID]; ok && e.GroupID != 0 {
		out.Group = g.Name
	}
	f.mu.RUnlock()
	return out
}

// uiGrants maps the UI's actions to the API's permissions, so both grant
// the same.
var uiGrants = map[web.Action]permission{web.ActWrite: permEnvWrite, web.ActSettings: permSettingsWrite, web.ActKubeAccess: permKubeAccess}

func (b uiBackend) Can(user string, a web.Action) bool {
	u, err := b.s.store.UserByName(user)
	if err != nil {
		return false
	}
	p, ok := uiGrants[a]
	return ok && can(u.Role, p)
}

// EnvironmentPage cuts the page from the fleet index, as GET
// /api/environments does, and reads only its environments from the store.
func (b uiBackend) EnvironmentPage(q web.EnvQuery) (web.EnvPage, error) {
	set := b.s.edgeSettings()
	lq := listQuery{name: strings.ToLower(q.Name), status: q.Status, mode: q.Mode, sort: q.Sort, desc: q.Desc,
		limit: q.Limit, offset: q.Offset, settings: set, now: b.s.now().Unix(), lastCheckIn: b.s.checkins.get}
	if lq.sort == "" {
		lq.sort = "id"
	}
	if lq.limit <= 0 {
		lq.limit = listDefaultLimit
	}
	lq.tag, lq.hasTag = q.Tag, q.Tag != 0
	lq.group, lq.hasGroup = q.Group, q.Group != 0
	f := b.s.fleetIndex()
	ids, total := f.page(&lq)
	envs, err := b.s.store.EnvironmentsByID(ids)
	if err != nil {
		return web.EnvPage{}, fmt.Errorf("environments: %w", err)
	}
	out := web.EnvPage{Total: total, Items: make([]web.Environment, 0, len(envs)), Counts: f.statusCounts(&lq)}
	for i := range envs {
		e := b.env(&envs[i], set)
		if sn, err := b.s.store.SnapshotMeta(envs[i].ID); err == nil {
			e.SnapshotAt = time.Unix(sn.Updated, 0)
		}
		out.Items = append(out.Items, e)
	}
	return out, nil
}

func (b uiBackend) Tags() ([]web.Option, error) {
	f := b.s.fleetIndex()
	f.mu.RLock()
	out := make([]web.Option, 0, len(f.tags))
	for _, t := range f.tags {
		out = append(out, web.Option{ID: t.ID, Name: t.Name})
	}
	f.mu.RUnlock()
	return sortedOptions(out), nil
}

func (b uiBackend) EdgeGroups() ([]web.Option, error) {
	f := b.s.fleetIndex()
	f.mu.RLock()
	out := make([]web.Option, 0, len(f.edgeGroups))
	for _, g := range f.edgeGroups {
		out = append(out, web.Option{ID: g.ID, Name: g.Name, Dynamic: g.Dynamic})
	}
	f.mu.RUnlock()
	return sortedOptions(out), nil
}

func (b uiBackend) EnvGroups() ([]web.Option, error) {
	f := b.s.fleetIndex()
	f.mu.RLock()
	out := make([]web.Option, 0, len(f.envGroups))
	for _, g := range f.envGroups {
		out = append(out, web.Option{ID: g.ID, Name: g.Name})
	}
	f.mu.RUnlock()
	return sortedOptions(out), nil
}

func sortedOptions(o []web.Option) []web.Option {
	slices.SortFunc(o, func(a, b web.Option) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.ID, b.ID))
	})
	return o
}

func (b uiBackend) Snapshot(id uint64) (*web.Snapshot, error) {
	sn, err := b.s.store.Snapshot(id)
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, uiErr(err))
	}
	d := &snapshot.Snapshot{}
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
	for i, h := range hist {
		out = append(out, web.HistoryEntry{Seq: h.Seq, Base: h.Base, Kind: h.Kind, Bytes: h.Bytes, At: time.Unix(h.At, 0),
			Viewable: rebuildable(hist, i)})
	}
	return out, nil
}

// rebuildable reports whether history entry i can be rebuilt: it keeps a
// whole snapshot, or it is a delta on the entry before it, which can.
func rebuildable(hist []store.HistoryEntry, i int) bool {
	for ; i >= 0; i-- {
		h := &hist[i]
		if len(h.Full) > 0 {
			return true
		}
		if h.Kind != "delta" || len(h.Data) == 0 || i == 0 || hist[i-1].Seq != h.Base {
			return false
		}
	}
	return false
}

// SnapshotAt rebuilds the snapshot as it was after push seq: the nearest
// entry at or before it that keeps a whole snapshot, then the deltas after
// it, in order.
func (b uiBackend) SnapshotAt(id, seq uint64) (*web.Snapshot, error) {
	hist, err := b.s.store.History(id)
	if err != nil {
		return nil, fmt.Errorf("snapshot history %d: %w", id, uiErr(err))
	}
	i := slices.IndexFunc(hist, func(h store.HistoryEntry) bool { return h.Seq == seq })
	if i < 0 || !rebuildable(hist, i) {
		if cur, err := b.Snapshot(id); err == nil && cur.Seq == seq {
			return cur, nil // the latest, whatever the history still holds
		}
		return nil, fmt.Errorf("environment %d: seq %d: %w", id, seq, web.ErrNotFound)
	}
	start := i
	for len(hist[start].Full) == 0 {
		start--
	}
	var deltas [][]byte
	for _, h := range hist[start+1 : i+1] {
		deltas = append(deltas, h.Data)
	}
	d, err := snapshot.Replay(hist[start].Full, deltas)
	if err != nil {
		return nil, fmt.Errorf("environment %d: rebuild seq %d: %w", id, seq, err)
	}
	if want := hist[i].Hash; len(want) > 0 {
		// A chain that rebuilds to something else than was stored then
		// (entries lost or out of order) is refused, not shown as the past.
		if sum, err := snapshot.Hash(d); err != nil || !bytes.Equal(sum[:len(want)], want) {
			return nil, fmt.Errorf("environment %d: seq %d: the history does not rebuild to the snapshot stored then: %w", id, seq, web.ErrNotFound)
		}
	}
	return &web.Snapshot{Seq: seq, Updated: time.Unix(hist[i].At, 0), Kind: hist[i].Kind, Docker: d}, nil
}

func (b uiBackend) Stacks() ([]web.Stack, error) {
	stacks, err := b.s.store.Stacks()
	if err != nil {
		return nil, fmt.Errorf("edge stacks: %w", err)
	}
	statuses, err := b.s.store.StackStatuses(0)
	if err != nil {
		return nil, fmt.Errorf("edge stack statuses: %w", err)
	}
	byStack := map[uint64][]store.StackStatus{}
	for _, x := range statuses {
		byStack[x.Stack] = append(byStack[x.Stack], x)
	}
	out := make([]web.Stack, 0, len(stacks))
	for i := range stacks {
		st := b.stack(&stacks[i])
		st.Statuses = map[string]int{}
		for _, t := range b.stackTargets(&stacks[i], byStack[stacks[i].ID]) {
			st.Statuses[t.Status]++
		}
		out = append(out, st)
	}
	return out, nil
}

func (b uiBackend) Stack(id uint64) (web.Stack, []web.StackTarget, error) {
	st, err := b.s.store.Stack(id)
	if err != nil {
		return web.Stack{}, nil, fmt.Errorf("edge stack %d: %w", id, uiErr(err))
	}
	statuses, err := b.s.store.StackStatuses(id)
	if err != nil {
		return web.Stack{}, nil, fmt.Errorf("edge stack %d statuses: %w", id, err)
	}
	out := b.stack(st)
	targets := b.stackTargets(st, statuses)
	out.Statuses = map[string]int{}
	for _, t := range targets {
		out.Statuses[t.Status]++
	}
	return out, targets, nil
}

// stack is st without its statuses, its edge groups named from the fleet
// index.
func (b uiBackend) stack(st *store.EdgeStack) web.Stack {
	out := web.Stack{ID: st.ID, Name: st.Name, Version: st.Version, Registries: st.RegistryNames,
		Created: unixTime(st.Created), Updated: unixTime(st.Updated), By: st.By}
	f := b.s.fleetIndex()
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, g := range st.EdgeGroupIDs {
		name := fmt.Sprintf("edge group %d", g)
		if eg, ok := f.edgeGroups[g]; ok {
			name = eg.Name
		}
		out.EdgeGroups = append(out.EdgeGroups, name)
	}
	return out
}

// stackTargets is st's state on each environment, as the API's status
// matrix has it (handleStackStatus): the stored statuses, and the targets
// the reconciler has not reached yet as pending.
func (b uiBackend) stackTargets(st *store.EdgeStack, statuses []store.StackStatus) []web.StackTarget {
	matrix := b.s.stackMatrix(st, statuses)
	out := make([]web.StackTarget, 0, len(matrix))
	for _, x := range matrix {
		out = append(out, web.StackTarget{EnvID: x.Env, Version: x.Version, Status: x.Status, Error: x.Error, Message: x.Message,
			Remove: x.Remove, Updated: unixTime(x.Updated)})
	}
	f := b.s.fleetIndex()
	f.mu.RLock()
	defer f.mu.RUnlock()
	for i := range out {
		if e := f.envs[out[i].EnvID]; e != nil {
			out[i].EnvName = e.name
		}
	}
	return out
}

// unixTime is t as a time; 0, never set, is the zero time.
func unixTime(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(t, 0)
}

// uiErr maps the store's not-found to web's, keeping the rest as they are.
func uiErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return web.ErrNotFound
	}
	return err
}
