package waitingroom

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"outpost/server/store"
	"outpost/throttle"
)

// Registry is the waiting room in memory: its devices with their live
// last-seen times, the rejected keys, and which environment a trusted key or
// edge ID became. The server writes the records to its store and tells the
// registry what it wrote; the registry answers who is where, places new
// devices, and lists the room.
type Registry struct {
	Limiter *Limiter

	mu        sync.Mutex // guards the maps; never held across I/O
	devices   map[uint64]*store.WaitingDevice
	byKey     map[string]uint64 // key fingerprint -> waiting device ID
	envByKey  map[string]uint64 // key fingerprint -> environment bound to it
	envByEdge map[string]uint64 // edge ID -> an environment bound to it
	rejected  map[string]bool
	seen      map[uint64]store.WaitingSeen // not yet flushed

	// New devices between their placement and their store write, so that
	// concurrent arrivals see each other: adding holds their key
	// fingerprints, reserved the room slots held by those that will wait,
	// claims the preauthorized edge IDs being trusted.
	adding   map[string]bool
	reserved int
	claims   map[string]bool

	// adds orders new devices' store writes with their entry into the
	// room (Add), so the room receives them in ID order and a listing's
	// Newest bounds what it showed. Held across the write; r.mu is not.
	adds sync.Mutex
}

// Binding is an environment bound to a device's key and edge ID.
type Binding struct {
	Env            uint64
	KeyFingerprint string // empty for an environment no device has contacted yet
	EdgeID         string
}

// NewRegistry returns the room holding the waiting devices, the rejected key
// fingerprints and the environments' bindings the store has.
func NewRegistry(l *Limiter, waiting []store.WaitingDevice, rejected []string, bindings []Binding) *Registry {
	r := &Registry{Limiter: l, devices: map[uint64]*store.WaitingDevice{}, byKey: map[string]uint64{},
		envByKey: map[string]uint64{}, envByEdge: map[string]uint64{}, rejected: map[string]bool{},
		seen: map[uint64]store.WaitingSeen{}, adding: map[string]bool{}, claims: map[string]bool{}}
	for i := range waiting {
		d := &waiting[i]
		r.devices[d.ID], r.byKey[d.KeyFingerprint] = d, d.ID
	}
	for _, fp := range rejected {
		r.rejected[fp] = true
	}
	for _, b := range bindings {
		if b.KeyFingerprint != "" {
			r.envByKey[b.KeyFingerprint] = b.Env
		}
		if b.EdgeID != "" {
			r.envByEdge[b.EdgeID] = b.Env
		}
	}
	return r
}

// Size is how many devices wait.
func (r *Registry) Size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.devices)
}

// Placing is how many new devices were placed and are not yet stored or
// released.
func (r *Registry) Placing() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reserved + len(r.adding)
}

// Bound records that environment env is bound to the key with fingerprint fp
// and to edgeID.
func (r *Registry) Bound(fp, edgeID string, env uint64) {
	r.mu.Lock()
	r.envByKey[fp] = env
	if edgeID != "" {
		r.envByEdge[edgeID] = env
	}
	r.mu.Unlock()
}

// Unbound forgets that env was bound to the key with fingerprint fp and to
// edgeID (its edge key was re-issued).
func (r *Registry) Unbound(fp, edgeID string, env uint64) {
	r.mu.Lock()
	if r.envByKey[fp] == env {
		delete(r.envByKey, fp)
	}
	if r.envByEdge[edgeID] == env {
		delete(r.envByEdge, edgeID)
	}
	r.mu.Unlock()
}

// EdgeEnv is the environment bound to edgeID, as the registry last heard.
func (r *Registry) EdgeEnv(edgeID string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.envByEdge[edgeID]
	return id, ok
}

// Rebind replaces edgeID's binding to environment was, which is gone, with
// env (0: none), and reports whether an environment is bound to edgeID
// after it. A binding made since the caller looked is kept.
func (r *Registry) Rebind(edgeID string, was, env uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.envByEdge[edgeID]; cur != was {
		return cur != 0
	}
	delete(r.envByEdge, edgeID)
	if env != 0 {
		r.envByEdge[edgeID] = env
	}
	return env != 0
}

// Known is what the registry knows of a device key.
type Known struct {
	Env      uint64 // the environment bound to it, or 0
	Rejected bool
	Waiting  uint64 // its waiting device, or 0
	EdgeID   string // the edge ID it waits under
}

// Lookup says what the key with fingerprint fp is.
func (r *Registry) Lookup(fp string) Known {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := Known{Env: r.envByKey[fp], Rejected: r.rejected[fp], Waiting: r.byKey[fp]}
	if d := r.devices[k.Waiting]; d != nil {
		k.EdgeID = d.EdgeID
	}
	return k
}

// Touch records a call of waiting device id at now with counter, made in
// mode: its latest call says the mode, as the agent may have restarted in
// the other one.
func (r *Registry) Touch(id uint64, now int64, counter uint64, mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws := r.seen[id]; counter > ws.Counter || now > ws.At {
		r.seen[id] = store.WaitingSeen{At: max(ws.At, now), Counter: max(ws.Counter, counter)}
	}
	if d := r.devices[id]; d != nil && mode != "" {
		d.Mode = mode
	}
}

// TakeSeen hands the last-seen times not yet flushed to the caller, to write
// to the store. The devices in memory keep them meanwhile, so the room shows
// them before the write and if it fails.
func (r *Registry) TakeSeen() map[uint64]store.WaitingSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.seen
	for id, ws := range d {
		if dev := r.devices[id]; dev != nil {
			dev.LastSeen, dev.Counter = max(dev.LastSeen, ws.At), max(dev.Counter, ws.Counter)
		}
	}
	r.seen = map[uint64]store.WaitingSeen{}
	return d
}

// PutBackSeen returns last-seen times TakeSeen gave out that could not be
// written, for the next flush; those of devices gone meanwhile are dropped.
func (r *Registry) PutBackSeen(ws map[uint64]store.WaitingSeen) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, w := range ws {
		if r.devices[id] == nil {
			continue
		}
		cur := r.seen[id]
		r.seen[id] = store.WaitingSeen{At: max(cur.At, w.At), Counter: max(cur.Counter, w.Counter)}
	}
}

// Arrival is a new device asking for a place.
type Arrival struct {
	EdgeID, KeyFP, Source string
	// KnownEnv is the environment Lookup found bound to the key, which the
	// store no longer has (0: none). Any other binding of the key means a
	// concurrent request placed it.
	KnownEnv uint64
	// EdgeTaken: the store has an environment carrying EdgeID.
	EdgeTaken bool
}

// Placement is where a new device goes.
type Placement struct {
	Decision Decision
	// Again: a concurrent request with the same key placed it first; the
	// device learns where at its next call.
	Again bool
	// Claim is the preauthorized edge ID a Trust takes, held until Release.
	Claim string
}

// Place decides where new device a goes under rules, and reserves its place
// until the caller stores it (Add; or Bound, then Release, for a trusted
// one), or gives it up with Release. A Full decision counts the places of devices not yet stored.
//
// A preauthorized edge ID trusts the key it names once: when an environment
// already carries that edge ID, or another request is claiming it, the
// device waits for an operator like any other.
func (r *Registry) Place(rules Rules, a Arrival) Placement {
	r.mu.Lock()
	defer r.mu.Unlock()
	curEnv, hasEnv := r.envByKey[a.KeyFP]
	if _, waits := r.byKey[a.KeyFP]; r.adding[a.KeyFP] || waits || (hasEnv && curEnv != a.KnownEnv) {
		return Placement{Again: true}
	}
	if PreauthorizedPair(rules.PreauthorizedEdgeIDs, a.EdgeID, a.KeyFP) {
		if _, bound := r.envByEdge[a.EdgeID]; a.EdgeTaken || bound || r.claims[a.EdgeID] {
			rules.PreauthorizedEdgeIDs = nil // Decide checks this edge ID only
		}
	}
	p := Placement{Decision: Decide(rules, r.Limiter, a.EdgeID, a.KeyFP, a.Source, len(r.devices)+r.reserved)}
	switch p.Decision {
	case Wait:
		r.adding[a.KeyFP] = true
		r.reserved++
	case Trust:
		r.adding[a.KeyFP] = true
		if PreauthorizedPair(rules.PreauthorizedEdgeIDs, a.EdgeID, a.KeyFP) {
			p.Claim = a.EdgeID
			r.claims[p.Claim] = true
		}
	}
	return p
}

// Add stores new waiting device d with write, which numbers it, and puts it
// into the room, in the place Place reserved for it. Adds are one at a
// time, so devices enter the room in the order of their IDs.
func (r *Registry) Add(d *store.WaitingDevice, write func(*store.WaitingDevice) error) error {
	r.adds.Lock()
	defer r.adds.Unlock()
	if err := write(d); err != nil {
		return err
	}
	r.added(d)
	return nil
}

// added puts stored waiting device d into the room, in the place Place
// reserved for it, if it did.
func (r *Registry) added(d *store.WaitingDevice) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.devices[d.ID], r.byKey[d.KeyFingerprint] = d, d.ID
	if r.adding[d.KeyFingerprint] {
		delete(r.adding, d.KeyFingerprint)
		r.reserved--
	}
}

// Release ends the placement p of the new device with key fingerprint fp
// that was not added: it was trusted, or its store write failed.
func (r *Registry) Release(fp string, p Placement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.adding[fp] {
		return
	}
	delete(r.adding, fp)
	if p.Decision == Wait {
		r.reserved--
	}
	if p.Claim != "" {
		delete(r.claims, p.Claim)
	}
}

// Pending is a waiting device as trusting it needs it.
type Pending struct {
	EdgeID  string
	Mode    string // from its latest call
	Counter uint64 // its highest counter, flushed or not
	BoundTo uint64 // the environment already bound to its edge ID
}

// Pending returns waiting device id's live state; false when it is not in
// the room.
func (r *Registry) Pending(id uint64) (Pending, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devices[id]
	if d == nil {
		return Pending{}, false
	}
	return Pending{EdgeID: d.EdgeID, Mode: d.Mode, Counter: max(d.Counter, r.seen[id].Counter), BoundTo: r.envByEdge[d.EdgeID]}, true
}

// Trusted records that waiting device id became environment env, bound to
// its key fp and edgeID.
func (r *Registry) Trusted(id uint64, fp, edgeID string, env uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leave(id, fp)
	r.envByKey[fp] = env
	r.envByEdge[edgeID] = env
}

// Rejected records that waiting device id, with key fp, was rejected: the
// key is refused from now on.
func (r *Registry) Rejected(id uint64, fp string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leave(id, fp)
	r.rejected[fp] = true
}

// Stale returns the waiting devices not seen since cutoff.
func (r *Registry) Stale(cutoff int64) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stale []uint64
	for id, d := range r.devices {
		if ws, ok := r.seen[id]; d.LastSeen < cutoff && (!ok || ws.At < cutoff) {
			stale = append(stale, id)
		}
	}
	return stale
}

// Expired takes waiting devices ids, expired in the store, out of the room.
func (r *Registry) Expired(ids []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if d := r.devices[id]; d != nil {
			r.leave(id, d.KeyFingerprint)
		}
	}
}

// leave takes waiting device id, with key fingerprint fp, out of the room.
// The caller holds r.mu.
func (r *Registry) leave(id uint64, fp string) {
	delete(r.devices, id)
	delete(r.byKey, fp)
	delete(r.seen, id)
}

// Query selects and orders waiting devices: Q is a substring of the edge
// ID, hostname, key fingerprint or source address (any case); Sort a key of
// the sorts ParseSort reads.
type Query struct {
	Q             string
	Sort          string
	Desc          bool
	Limit, Offset int
}

// Listed is a waiting device as the room lists it: a copy with its live
// last-seen time, and the environment already bound to its edge ID under
// another key (a re-flashed device, or a copied edge ID), if any.
type Listed struct {
	store.WaitingDevice
	BoundTo uint64
}

// Page is one page of a listing.
type Page struct {
	Items []Listed
	Total int // matching the query
	// Newest is the highest device ID in the room when it was listed: acting
	// on "all that match" up to it leaves out devices that arrived after.
	Newest uint64
}

// hit is a waiting device as the list sorts it: the record and its live
// last-seen time. Sorting these, not copies, keeps a page of a
// 10,000-device room to a pass and a sort of pointers.
type hit struct {
	d    *store.WaitingDevice
	last int64
}

// sorts are the orders the room lists in.
var sorts = map[string]func(a, b hit) int{
	"firstSeen": func(a, b hit) int { return cmp.Compare(a.d.FirstSeen, b.d.FirstSeen) },
	"lastSeen":  func(a, b hit) int { return cmp.Compare(a.last, b.last) },
	"hostname":  func(a, b hit) int { return strings.Compare(a.d.Hostname, b.d.Hostname) },
	"edgeId":    func(a, b hit) int { return strings.Compare(a.d.EdgeID, b.d.EdgeID) },
}

// ParseSort reads a sort parameter: firstSeen, lastSeen, hostname or edgeId,
// with - before it for descending; empty is firstSeen.
func ParseSort(v string) (key string, desc bool, err error) {
	desc = strings.HasPrefix(v, "-")
	key = strings.TrimPrefix(v, "-")
	if key == "" {
		key = "firstSeen"
	}
	if sorts[key] == nil {
		return "", false, fmt.Errorf("sort %q: want firstSeen, lastSeen, hostname or edgeId, with - for descending", v)
	}
	return key, desc, nil
}

// matches reports whether d matches the lower-case search q.
func matches(d *store.WaitingDevice, q string) bool {
	if q == "" {
		return true
	}
	for _, f := range [...]string{d.EdgeID, d.Hostname, d.KeyFingerprint, d.Source} {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

// List returns one page of the waiting devices matching q, with the number
// that match.
func (r *Registry) List(q Query) Page {
	search := strings.ToLower(strings.TrimSpace(q.Q))
	by := sorts[q.Sort]
	if by == nil {
		by = sorts["firstSeen"]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var p Page
	hits := make([]hit, 0, len(r.devices))
	for id, d := range r.devices {
		p.Newest = max(p.Newest, id)
		if !matches(d, search) {
			continue
		}
		h := hit{d: d, last: d.LastSeen}
		if ws, ok := r.seen[id]; ok && ws.At > h.last {
			h.last = ws.At
		}
		hits = append(hits, h)
	}
	slices.SortFunc(hits, func(a, b hit) int {
		c := cmp.Or(by(a, b), cmp.Compare(a.d.ID, b.d.ID))
		if q.Desc {
			return -c
		}
		return c
	})
	p.Total = len(hits)
	from := min(max(q.Offset, 0), p.Total)
	page := hits[from : from+min(max(q.Limit, 0), p.Total-from)]
	p.Items = make([]Listed, 0, len(page))
	for _, h := range page {
		l := Listed{WaitingDevice: *h.d, BoundTo: r.envByEdge[h.d.EdgeID]}
		l.LastSeen = h.last
		p.Items = append(p.Items, l)
	}
	return p
}

// IDs returns the IDs of the waiting devices matching the search q, in
// order, up to ID upTo: those that arrived after a listing whose Newest
// was upTo are left out.
func (r *Registry) IDs(q string, upTo uint64) []uint64 {
	q = strings.ToLower(strings.TrimSpace(q))
	r.mu.Lock()
	var ids []uint64
	for id, d := range r.devices {
		if id <= upTo && matches(d, q) {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// Arrivals returns how many devices wait, how many arrived in each of the
// last 60 minutes before now (oldest first), and how many came from each
// source network.
func (r *Registry) Arrivals(now int64) (n int, perMinute []int, networks map[string]int) {
	perMinute, networks = make([]int, 60), map[string]int{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.devices {
		if ago := (now - d.FirstSeen) / 60; ago >= 0 && ago < 60 {
			perMinute[59-ago]++
		}
		networks[throttle.Network(d.Source)]++
	}
	return len(r.devices), perMinute, networks
}
