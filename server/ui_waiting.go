package server

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost/server/store"
	"outpost/waitingroom"
	"outpost/web"
)

// The waiting room as the web UI sees it: the same listing, trust, reject
// and settings as the JSON API, on behalf of the UI's user.

// floodNetworks is how many source networks the waiting room page names.
const floodNetworks = 5

func (b uiBackend) WaitingRoom(q web.WaitingQuery) (web.WaitingPage, error) {
	s := b.s
	p := s.room.List(waitingroom.Query{Q: q.Q, Sort: q.Sort, Desc: q.Desc, Limit: max(q.Limit, 1), Offset: q.Offset})
	out := web.WaitingPage{Total: p.Total, Newest: p.Newest, Max: s.edgeSettings().WaitingRoomMax}
	f := s.fleetIndex()
	f.mu.RLock()
	for _, v := range p.Items {
		d := web.WaitingDevice{ID: v.ID, EdgeID: v.EdgeID, Fingerprint: v.KeyFingerprint, Hostname: v.Hostname,
			AgentVersion: v.AgentVersion, Mode: v.Mode, Groups: v.Groups, Tags: v.Tags, Source: v.Source,
			FirstSeen: unixTime(v.FirstSeen), LastSeen: unixTime(v.LastSeen)}
		d.Platform = strings.Join(slices.DeleteFunc([]string{v.Platform, strings.Trim(v.OS+"/"+v.Arch, "/")}, func(x string) bool { return x == "" }), " · ")
		if e := f.envs[v.BoundTo]; e != nil {
			d.BoundTo, d.BoundName = v.BoundTo, e.name
		}
		out.Items = append(out.Items, d)
	}
	f.mu.RUnlock()

	// The whole room: arrivals per minute over the last hour, and the
	// source networks most of it came from.
	var nets map[string]int
	out.Room, out.Arrivals, nets = s.room.Arrivals(s.now().Unix())
	for n, c := range nets {
		out.Networks = append(out.Networks, web.NetworkCount{Network: n, N: c})
	}
	slices.SortFunc(out.Networks, func(a, b web.NetworkCount) int {
		return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Network, b.Network))
	})
	out.Networks = out.Networks[:min(len(out.Networks), floodNetworks)]
	return out, nil
}

func (b uiBackend) WaitingIDs(q string, upTo uint64) ([]uint64, error) {
	return b.s.room.IDs(q, upTo), nil
}

func (b uiBackend) Trust(a web.Actor, ids, edgeGroups, tags []uint64) ([]web.WaitingResult, error) {
	res := b.s.trustWaiting(a.Remote, a.User, waitingAction{IDs: ids, EdgeGroupIDs: edgeGroups, TagIDs: tags})
	return uiResults(res), nil
}

func (b uiBackend) Reject(a web.Actor, ids []uint64) ([]web.WaitingResult, error) {
	return uiResults(b.s.rejectWaiting(a.Remote, a.User, ids)), nil
}

func uiResults(res []waitingResult) []web.WaitingResult {
	out := make([]web.WaitingResult, 0, len(res))
	for _, r := range res {
		x := web.WaitingResult{ID: r.ID, EdgeID: r.EdgeID, BoundTo: r.BoundTo, Problem: r.Problem}
		if r.Env != nil {
			x.EnvID, x.EnvName = r.Env.ID, r.Env.Name
		}
		out = append(out, x)
	}
	return out
}

func (b uiBackend) Onboarding() (web.Onboarding, error) {
	key, _ := b.s.onboardingKey()
	e := b.s.edgeSettings()
	return web.Onboarding{EdgeKey: key, DockerRun: dockerRun(store.ModeAsync, key), Rules: web.OnboardingRules{
		TrustOnFirstConnect: e.TrustOnFirstConnect, PreauthorizedEdgeIDs: e.PreauthorizedEdgeIDs, PreauthorizedKeys: e.PreauthorizedKeys,
		WaitingRoomMax: e.WaitingRoomMax, PerSource: e.NewDevicesPerMinute, PerNetwork: e.NewDevicesPerNetwork,
		Total: e.NewDevicesTotal, ExpirySeconds: e.WaitingExpiry,
	}}, nil
}

// SetOnboardingRules changes the waiting room's part of the edge settings
// and keeps the rest, checked as PUT /api/settings/edge checks them.
func (b uiBackend) SetOnboardingRules(a web.Actor, r web.OnboardingRules) error {
	e := b.s.edgeSettings()
	e.TrustOnFirstConnect, e.PreauthorizedEdgeIDs, e.PreauthorizedKeys = r.TrustOnFirstConnect, r.PreauthorizedEdgeIDs, r.PreauthorizedKeys
	e.WaitingRoomMax, e.NewDevicesPerMinute, e.NewDevicesPerNetwork = r.WaitingRoomMax, r.PerSource, r.PerNetwork
	e.NewDevicesTotal, e.WaitingExpiry = r.Total, r.ExpirySeconds
	if p := e.problems(); len(p) > 0 {
		return &web.FormError{Problems: p}
	}
	if err := b.s.putEdgeSettings(e); err != nil {
		return err
	}
	b.s.auditAt(a.Remote, a.User, auditSettingsUpdate, "settings edge", onboardingDetail(e)+" (web UI)")
	return nil
}

// onboardingDetail is the audit detail of a change of the onboarding rules.
func onboardingDetail(e EdgeSettings) string {
	var b strings.Builder
	b.WriteString("trust on first connect ")
	if e.TrustOnFirstConnect {
		b.WriteString("on")
	} else {
		b.WriteString("off")
	}
	return b.String() + ", " + strconv.Itoa(len(e.PreauthorizedEdgeIDs)) + " preauthorized edge IDs, " + strconv.Itoa(len(e.PreauthorizedKeys)) +
		" keys, waiting room max " + strconv.Itoa(e.WaitingRoomMax) + ", new devices per minute " + strconv.Itoa(e.NewDevicesPerMinute) +
		" per source, " + strconv.Itoa(e.NewDevicesPerNetwork) + " per network, " + strconv.Itoa(e.NewDevicesTotal) + " in all, expiry " + strconv.Itoa(e.WaitingExpiry) + " s"
}

func (b uiBackend) RotateOnboardingKey(a web.Actor) error {
	if err := b.s.rotateOnboarding(); err != nil {
		return errors.Join(errors.New("rotate the onboarding key"), err)
	}
	b.s.auditAt(a.Remote, a.User, auditOnboardingRotate, "onboarding key", "the old key is refused from now on (web UI)")
	b.s.log.Info("onboarding key rotated", "by", a.User)
	return nil
}

// QueueCommand checks a command as POST /api/environments/{id}/commands
// does and queues it.
func (b uiBackend) QueueCommand(a web.Actor, env uint64, kind string, args map[string]string) (uint64, error) {
	raw := make(map[string]json.RawMessage, len(args))
	for k, v := range args {
		raw[k], _ = json.Marshal(v)
	}
	checked, problems := commandArgsOf(kind, raw)
	if len(problems) > 0 {
		return 0, &web.FormError{Problems: problems}
	}
	if _, err := b.s.store.Environment(env); err != nil {
		return 0, uiErr(err)
	}
	c, err := b.s.queueCommand(a.Remote, a.User, env, kind, checked)
	if err != nil {
		return 0, err
	}
	return c.ID, nil
}

// CommandLog is the environment's command log, and when its device should
// pull next: its last check-in plus its effective command frequency.
func (b uiBackend) CommandLog(env uint64) (web.CommandLog, error) {
	s := b.s
	e, err := s.store.Environment(env)
	if err != nil {
		return web.CommandLog{}, uiErr(err)
	}
	pending, err := s.store.PendingCommands(env, store.ResultsLimit)
	if err != nil {
		return web.CommandLog{}, err
	}
	results, err := s.store.CommandResults(env, 50)
	if err != nil {
		return web.CommandLog{}, err
	}
	var out web.CommandLog
	for _, c := range pending {
		out.Pending = append(out.Pending, uiCommand(redacted(c)))
	}
	for _, c := range results {
		out.Results = append(out.Results, uiCommand(redacted(c)))
	}
	last := e.LastCheckIn
	if t, ok := s.checkins.get(env); ok {
		last = max(last, t)
	}
	if last != 0 {
		f := effectiveFrequencies(s.edgeSettings(), e.Mode, e.Frequencies)
		out.NextPull = time.Unix(last+int64(f.Command), 0)
	}
	return out, nil
}

func uiCommand(c store.Command) web.Command {
	return web.Command{ID: c.ID, Kind: c.Kind, Target: cmp.Or(c.Args["id"], c.Args["name"]), Status: c.Status, Error: c.Error,
		By: c.By, Created: unixTime(c.Created), Finished: unixTime(c.Finished)}
}
