package server

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"outpost/protocol"
	"outpost/server/store"
)

// fleet is the in-memory index of environments, tags and groups: a summary
// of each environment (what the list filters and sorts on), and the members
// of each edge group. It is loaded from the store once at start and kept in
// step by every change made through the server, so listing a page of a
// 100,000-device fleet is a pass over memory, and dynamic edge group
// membership is recomputed when tags or rules change, never per request.
//
// Changes go store first, then index, under changeMu, so two changes land
// in the index in the order they landed in the store.
type fleet struct {
	load    sync.Once
	loadErr error

	// changeMu serializes changes (store write, then index update). It is
	// held across local store writes, never across network I/O.
	changeMu sync.Mutex

	mu         sync.RWMutex // guards the fields below; never held across a store call
	envs       map[uint64]*envSummary
	byID       []*envSummary // sorted by ID
	byName     []*envSummary // sorted by lower-case name, then ID; nil when stale
	tags       map[uint64]store.Tag
	envGroups  map[uint64]store.EnvironmentGroup
	edgeGroups map[uint64]store.EdgeGroup
	members    map[uint64]map[uint64]struct{} // edge group -> environments
}

// envSummary is what the list filters and sorts environments by.
type envSummary struct {
	id          uint64
	name        string
	nameLower   string
	mode        string
	trusted     bool
	group       uint64
	tags        []uint64 // sorted
	freq        *protocol.Frequencies
	lastCheckIn int64 // as stored; the live value is in checkins
}

func summarize(e *store.Environment) *envSummary {
	tags := slices.Clone(e.TagIDs)
	slices.Sort(tags)
	var f *protocol.Frequencies
	if e.Frequencies != nil {
		f = new(*e.Frequencies)
	}
	return &envSummary{
		id: e.ID, name: e.Name, nameLower: strings.ToLower(e.Name), mode: e.Mode, trusted: e.Trusted,
		group: e.GroupID, tags: slices.Compact(tags), freq: f, lastCheckIn: e.LastCheckIn,
	}
}

// fleetIndex returns the index, loading it from the store on first use. Run
// loads it before serving and fails on a load error; later calls then never
// touch the store.
func (s *Server) fleetIndex() *fleet {
	f := &s.fleet
	f.load.Do(func() {
		f.loadErr = f.loadFrom(s.store)
		if f.loadErr != nil {
			s.log.Error("load environment index", "err", f.loadErr)
		}
	})
	return f
}

func (f *fleet) loadFrom(st *store.Store) error {
	envs, err := st.Environments()
	if err != nil {
		return fmt.Errorf("environments: %w", err)
	}
	tags, err := st.Tags()
	if err != nil {
		return fmt.Errorf("tags: %w", err)
	}
	envGroups, err := st.EnvironmentGroups()
	if err != nil {
		return fmt.Errorf("environment groups: %w", err)
	}
	edgeGroups, err := st.EdgeGroups()
	if err != nil {
		return fmt.Errorf("edge groups: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.envs = make(map[uint64]*envSummary, len(envs))
	f.byID = make([]*envSummary, 0, len(envs))
	for i := range envs {
		sum := summarize(&envs[i])
		f.envs[sum.id] = sum
		f.byID = append(f.byID, sum) // the store iterates by ID
	}
	f.tags = map[uint64]store.Tag{}
	for _, t := range tags {
		f.tags[t.ID] = t
	}
	f.envGroups = map[uint64]store.EnvironmentGroup{}
	for _, g := range envGroups {
		f.envGroups[g.ID] = g
	}
	f.edgeGroups = map[uint64]store.EdgeGroup{}
	f.members = map[uint64]map[uint64]struct{}{}
	for _, g := range edgeGroups {
		f.setEdgeGroupLocked(g)
	}
	return nil
}

// putEnv adds or replaces environment e in the index.
func (f *fleet) putEnv(e *store.Environment) {
	sum := summarize(e)
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.envs[e.ID]
	f.envs[e.ID] = sum
	if ok {
		i, _ := slices.BinarySearchFunc(f.byID, e.ID, func(x *envSummary, id uint64) int { return cmp.Compare(x.id, id) })
		f.byID[i] = sum
		if f.byName != nil {
			if old.name != sum.name {
				f.byName = nil
			} else {
				j := slices.Index(f.byName, old)
				f.byName[j] = sum
			}
		}
	} else {
		i, _ := slices.BinarySearchFunc(f.byID, e.ID, func(x *envSummary, id uint64) int { return cmp.Compare(x.id, id) })
		f.byID = slices.Insert(f.byID, i, sum)
		f.byName = nil
	}
	if !ok || !slices.Equal(old.tags, sum.tags) {
		f.reclassifyLocked(sum)
	}
}

// removeEnv drops environment id from the index and from every edge group.
func (f *fleet) removeEnv(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.envs[id]; !ok {
		return
	}
	delete(f.envs, id)
	f.byID = slices.DeleteFunc(f.byID, func(x *envSummary) bool { return x.id == id })
	f.byName = nil
	for gid, g := range f.edgeGroups {
		delete(f.members[gid], id)
		if !g.Dynamic {
			g.EnvironmentIDs = slices.DeleteFunc(slices.Clone(g.EnvironmentIDs), func(e uint64) bool { return e == id })
			f.edgeGroups[gid] = g
		}
	}
}

// matches reports whether an environment with tags (sorted) belongs to the
// dynamic group g.
func matches(g *store.EdgeGroup, tags []uint64) bool {
	if len(g.TagIDs) == 0 {
		return false
	}
	has := func(t uint64) bool { _, ok := slices.BinarySearch(tags, t); return ok }
	if g.Match == store.MatchAny {
		return slices.ContainsFunc(g.TagIDs, has)
	}
	for _, t := range g.TagIDs {
		if !has(t) {
			return false
		}
	}
	return true
}

// reclassifyLocked recomputes sum's membership of every dynamic group: the
// cost of a tag change is the number of groups, not of environments.
func (f *fleet) reclassifyLocked(sum *envSummary) {
	for gid, g := range f.edgeGroups {
		if !g.Dynamic {
			continue
		}
		if matches(&g, sum.tags) {
			f.members[gid][sum.id] = struct{}{}
		} else {
			delete(f.members[gid], sum.id)
		}
	}
}

// setEdgeGroupLocked adds or replaces g and recomputes its members: the
// listed environments of a static group, a pass over the fleet for a
// dynamic one (once per rule change).
func (f *fleet) setEdgeGroupLocked(g store.EdgeGroup) {
	f.edgeGroups[g.ID] = g
	m := map[uint64]struct{}{}
	if g.Dynamic {
		for _, sum := range f.byID {
			if matches(&g, sum.tags) {
				m[sum.id] = struct{}{}
			}
		}
	} else {
		for _, id := range g.EnvironmentIDs {
			if _, ok := f.envs[id]; ok {
				m[id] = struct{}{}
			}
		}
	}
	f.members[g.ID] = m
}

func (f *fleet) putEdgeGroup(g store.EdgeGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setEdgeGroupLocked(g)
}

func (f *fleet) removeEdgeGroup(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.edgeGroups, id)
	delete(f.members, id)
}

func (f *fleet) putTag(t store.Tag) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[t.ID] = t
}

// taggedWith lists the environments carrying tag id.
func (f *fleet) taggedWith(id uint64) []uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []uint64
	for _, sum := range f.byID {
		if _, ok := slices.BinarySearch(sum.tags, id); ok {
			out = append(out, sum.id)
		}
	}
	return out
}

// removeTag drops tag id from the index, its environments and its groups,
// as store.DeleteTag did, and recomputes the groups that used it.
func (f *fleet) removeTag(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tags, id)
	for _, sum := range f.byID {
		if i, ok := slices.BinarySearch(sum.tags, id); ok {
			sum.tags = slices.Delete(slices.Clone(sum.tags), i, i+1)
		}
	}
	for _, g := range f.edgeGroups {
		if slices.Contains(g.TagIDs, id) {
			g.TagIDs = slices.DeleteFunc(slices.Clone(g.TagIDs), func(t uint64) bool { return t == id })
			f.setEdgeGroupLocked(g)
		}
	}
}

func (f *fleet) putEnvGroup(g store.EnvironmentGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.envGroups[g.ID] = g
}

// inEnvGroup lists the environments of environment group id.
func (f *fleet) inEnvGroup(id uint64) []uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []uint64
	for _, sum := range f.byID {
		if sum.group == id {
			out = append(out, sum.id)
		}
	}
	return out
}

func (f *fleet) removeEnvGroup(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.envGroups, id)
	for _, sum := range f.byID {
		if sum.group == id {
			sum.group = 0
		}
	}
}

// edgeGroupMembers returns the environments of edge group groupID, by ID;
// nil for an unknown group.
func (s *Server) edgeGroupMembers(groupID uint64) []uint64 {
	f := s.fleetIndex()
	f.mu.RLock()
	defer f.mu.RUnlock()
	m := f.members[groupID]
	if m == nil {
		return nil
	}
	out := make([]uint64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// indexEnvironment puts e in the environment index. Every code path that
// creates or changes an environment in the store calls it after the write
// (the waiting room's trust included), or the list will not show it.
func (s *Server) indexEnvironment(e *store.Environment) { s.fleetIndex().putEnv(e) }

// missing returns the IDs of ids not in known, for one error naming them all.
func missing[T any](ids []uint64, known map[uint64]T) []uint64 {
	var out []uint64
	for _, id := range ids {
		if _, ok := known[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// setEnvironmentTags replaces environment envID's tags; dynamic edge groups
// follow at once. Unknown tags are refused, all named in one error.
func (s *Server) setEnvironmentTags(envID uint64, tagIDs []uint64) error {
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	f.mu.RLock()
	bad := missing(tagIDs, f.tags)
	f.mu.RUnlock()
	if len(bad) > 0 {
		return fmt.Errorf("tags %v: %w", bad, errUnknownTag)
	}
	tags := slices.Clone(tagIDs)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	e, err := s.store.UpdateEnvironment(envID, func(e *store.Environment) error {
		e.TagIDs = tags
		return nil
	})
	if err != nil {
		return fmt.Errorf("environment %d: set tags: %w", envID, err)
	}
	f.putEnv(e)
	return nil
}

// addToEdgeGroups adds environment envID to the static edge groups
// groupIDs. A dynamic group is refused: its members follow their tags.
func (s *Server) addToEdgeGroups(envID uint64, groupIDs []uint64) error {
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	f.mu.RLock()
	_, envOK := f.envs[envID]
	bad := missing(groupIDs, f.edgeGroups)
	var dynamic []uint64
	for _, id := range groupIDs {
		if g, ok := f.edgeGroups[id]; ok && g.Dynamic {
			dynamic = append(dynamic, id)
		}
	}
	f.mu.RUnlock()
	switch {
	case !envOK:
		return fmt.Errorf("environment %d: %w", envID, store.ErrNotFound)
	case len(bad) > 0:
		return fmt.Errorf("edge groups %v: %w", bad, errUnknownGroup)
	case len(dynamic) > 0:
		return fmt.Errorf("edge groups %v: %w", dynamic, errDynamicGroup)
	}
	for _, id := range groupIDs {
		g, err := s.store.UpdateEdgeGroup(id, func(g *store.EdgeGroup) error {
			if !slices.Contains(g.EnvironmentIDs, envID) {
				g.EnvironmentIDs = append(g.EnvironmentIDs, envID)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("edge group %d: add environment %d: %w", id, envID, err)
		}
		f.putEdgeGroup(*g)
	}
	return nil
}
