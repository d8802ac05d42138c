package web_test

import (
	"fmt"
	"slices"
	"strings"

	"outpost/snapshot"
	"outpost/web"
)

func (f *fakeBackend) Can(_ string, a web.Action) bool {
	return !f.readOnly && (a == web.ActWrite || a == web.ActSettings || a == web.ActKubeAccess && f.kubeRole == "")
}

func (f *fakeBackend) Tags() ([]web.Option, error)       { return f.tags, f.err }
func (f *fakeBackend) EdgeGroups() ([]web.Option, error) { return f.groups, f.err }
func (f *fakeBackend) EnvGroups() ([]web.Option, error)  { return f.envGroup, f.err }

func (f *fakeBackend) SnapshotAt(id, seq uint64) (*web.Snapshot, error) {
	if f.err != nil {
		return nil, f.err
	}
	if s := f.past[id][seq]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("environment %d seq %d: %w", id, seq, web.ErrNotFound)
}

func (f *fakeBackend) matching(q string) []web.WaitingDevice {
	var out []web.WaitingDevice
	for _, d := range f.waiting {
		if q == "" || strings.Contains(d.EdgeID, q) || strings.Contains(d.Hostname, q) {
			out = append(out, d)
		}
	}
	return out
}

func (f *fakeBackend) WaitingRoom(q web.WaitingQuery) (web.WaitingPage, error) {
	if f.err != nil {
		return web.WaitingPage{}, f.err
	}
	m := f.matching(q.Q)
	p := web.WaitingPage{Total: len(m), Room: len(f.waiting), Max: 1000, Arrivals: make([]int, 60)}
	for _, d := range f.waiting {
		p.Newest = max(p.Newest, d.ID)
	}
	p.Items = m[min(q.Offset, len(m)):min(q.Offset+q.Limit, len(m))]
	for range f.waiting {
		p.Arrivals[59]++
	}
	if len(f.waiting) > 0 {
		p.Networks = []web.NetworkCount{{Network: "198.51.100.0/24", N: len(f.waiting)}}
	}
	return p, nil
}

func (f *fakeBackend) WaitingIDs(q string, upTo uint64) ([]uint64, error) {
	var ids []uint64
	for _, d := range f.matching(q) {
		if d.ID <= upTo {
			ids = append(ids, d.ID)
		}
	}
	return ids, f.err
}

func (f *fakeBackend) Trust(a web.Actor, ids, groups, tags []uint64) ([]web.WaitingResult, error) {
	f.trusted = append(f.trusted, trustCall{actor: a, ids: ids, groups: groups, tags: tags})
	var out []web.WaitingResult
	for _, id := range ids {
		r := web.WaitingResult{ID: id, Problem: fmt.Sprintf("waiting device %d: not in the waiting room", id)}
		for _, d := range f.waiting {
			if d.ID == id {
				r = web.WaitingResult{ID: id, EdgeID: d.EdgeID, EnvID: 100 + id, EnvName: d.Hostname, BoundTo: d.BoundTo}
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeBackend) Reject(_ web.Actor, ids []uint64) ([]web.WaitingResult, error) {
	f.rejected = append(f.rejected, ids)
	var out []web.WaitingResult
	for _, id := range ids {
		out = append(out, web.WaitingResult{ID: id})
	}
	return out, nil
}

func (f *fakeBackend) Onboarding() (web.Onboarding, error) { return f.onboard, f.err }

func (f *fakeBackend) SetOnboardingRules(_ web.Actor, r web.OnboardingRules) error {
	if len(f.rulesErr) > 0 {
		return &web.FormError{Problems: f.rulesErr}
	}
	f.rulesSet = &r
	f.onboard.Rules = r
	return nil
}

func (f *fakeBackend) RotateOnboardingKey(web.Actor) error {
	f.rotations++
	return nil
}

func snapshotMount(s string) snapshot.Mount {
	return snapshot.Mount{Type: "bind", Source: s, Destination: s}
}

type queued struct {
	actor web.Actor
	env   uint64
	kind  string
	args  map[string]string
}

func (f *fakeBackend) QueueCommand(a web.Actor, env uint64, kind string, args map[string]string) (uint64, error) {
	if kind == "container.remove" && args["id"] == "refused" {
		return 0, &web.FormError{Problems: []string{"args.id: no such container"}}
	}
	f.queued = append(f.queued, queued{a, env, kind, args})
	id := uint64(len(f.queued))
	f.log.Pending = append(f.log.Pending, web.Command{ID: id, Kind: kind, Target: args["id"] + args["name"], Status: "pending", By: a.User})
	return id, nil
}

func (f *fakeBackend) CommandLog(uint64) (web.CommandLog, error) { return f.log, f.err }

func (f *fakeBackend) CreateEnvironment(a web.Actor, n web.NewEnvironment) (web.CreatedEnvironment, error) {
	if n.Name == "taken" {
		return web.CreatedEnvironment{}, &web.FormError{Problems: []string{"name: taken"}}
	}
	id := uint64(100 + len(f.envs))
	f.envs = append(f.envs, web.Environment{ID: id, Name: n.Name, Mode: n.Mode, Status: "never", TagIDs: n.Tags, GroupID: n.Group,
		OwnPing: n.Ping, OwnSnapshot: n.Snapshot, OwnCommand: n.Command})
	f.created = append(f.created, n)
	return web.CreatedEnvironment{ID: id, Name: n.Name, Mode: n.Mode, EdgeKey: "a2V5LXdpdGgtc2VjcmV0", DockerRun: "docker run -e EDGE_KEY=a2V5LXdpdGgtc2VjcmV0 outpost/agent"}, nil
}

func (f *fakeBackend) UpdateEnvironment(_ web.Actor, id uint64, u web.EnvUpdate) error {
	for i := range f.envs {
		if f.envs[i].ID == id {
			e := &f.envs[i]
			e.Name, e.OwnPing, e.OwnSnapshot, e.OwnCommand, e.TagIDs, e.GroupID = u.Name, u.Ping, u.Snapshot, u.Command, u.Tags, u.Group
			return nil
		}
	}
	return web.ErrNotFound
}

func (f *fakeBackend) DeleteImpact(id uint64) (web.DeleteImpact, error) {
	return web.DeleteImpact{EdgeID: "shop-042-gw-7f3a", HistoryEntries: len(f.hist[id]), PendingCommands: 2, Stacks: []string{"telemetry", "pos"}}, nil
}

func (f *fakeBackend) DeleteEnvironment(_ web.Actor, id uint64) error {
	f.deleted = append(f.deleted, id)
	f.envs = slices.DeleteFunc(f.envs, func(e web.Environment) bool { return e.ID == id })
	return nil
}

func (f *fakeBackend) Usage(uint64) ([]web.UsageDay, error) { return f.usage, f.err }

func (f *fakeBackend) TopUsage(n int) ([]web.UsageRow, error) {
	return f.top[:min(n, len(f.top))], f.err
}
