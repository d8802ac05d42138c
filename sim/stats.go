package sim

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Exchange kinds: an async device's by what the request carried, a
// standard device's poll, an exchange whose answer brought an edge stack's
// command, and a request through a tunnel.
const (
	kindFirst    = "first"    // a signed first contact (enrollment), with the full snapshot, either mode
	kindSnapshot = "snapshot" // async: a snapshot push, full or delta
	kindCommands = "commands" // async: command acks, no snapshot
	kindPing     = "ping"     // async: nothing but the check-in and the command pull
	kindPoll     = "poll"     // standard: every poll after the first contact
	kindStack    = "stack"    // either mode: the answer brought a stack command (and its content)
	kindTunnel   = "tunnel"   // an API request through the server and a tunnel to a device
)

var kinds = []string{kindFirst, kindSnapshot, kindCommands, kindPing, kindPoll, kindStack, kindTunnel}

// asyncDay and standardDay are the kinds an idle device of the mode repeats
// each day: the per-day bytes scale their mean. First contacts, stack
// deliveries and tunnel requests are events, not a daily cost.
var (
	asyncDay    = []string{kindSnapshot, kindCommands, kindPing}
	standardDay = []string{kindPoll}
)

// kindStats gathers one kind's exchanges.
type kindStats struct {
	n            int64
	lat          []float64 // ms, every exchange
	body, socket int64
	dialed       int64 // exchanges that made a connection
	// Bytes of the exchanges on a kept connection.
	bodyKept, socketKept int64
}

// recorder gathers the run's measurements. mu guards everything; nothing
// blocks while holding it.
type recorder struct {
	mu     sync.Mutex
	kinds  map[string]*kindStats
	errors map[string]int64
	// errSample is the first error of each kind, as it read.
	errSample map[string]string
	// window is the latencies since the last sample, for the live p99.
	window []float64
	// windowN counts exchanges since the last sample.
	windowN int64
	// up is the devices that had an exchange answered.
	up map[int]bool
	// Commands: when queued, when the answer carrying them arrived, when
	// the answer to the request acking them arrived (first time), and how
	// many answered requests carried each one's ack. A device may see a
	// command before its queuing call has returned, so latencies are
	// taken at the end.
	queued    map[uint64]time.Time
	delivered map[uint64]time.Time
	acked     map[uint64]time.Time
	ackCount  map[uint64]int
	// stackCmds is the reconciler's stack commands the devices were given.
	stackCmds map[uint64]bool
	// stack is the run's edge stack, nil until created.
	stack *stackRun
	// Per stack and device: when the answer bringing its deploy arrived,
	// and when the answer to the request reporting it running did. A
	// device may be given the stack before its creation's call returns.
	stackGiven   map[stackDevice]time.Time
	stackRunning map[stackDevice]time.Time
	// Tunnels: asked of the server and opened (the API's answer), up on
	// the device's side now, and the requests through them.
	tunnelAsked   int
	tunnelOpen    map[int]bool
	tunnelOpenLat []float64
	// listLat is the environments list page as the operator asks it (ms).
	listLat    []float64
	tunnelsUp  int
	tunnelSent int64
	tunnelDone int64
	tunnelOK   int64
}

// stackRun is the run's edge stack: when it was created, its version, and
// the devices its group holds.
type stackRun struct {
	id, version uint64
	created     time.Time
	targets     []int
}

type stackDevice struct {
	stack uint64
	dev   int
}

func newRecorder() *recorder {
	r := &recorder{kinds: map[string]*kindStats{}, errors: map[string]int64{}, errSample: map[string]string{}, up: map[int]bool{},
		queued: map[uint64]time.Time{}, delivered: map[uint64]time.Time{}, acked: map[uint64]time.Time{}, ackCount: map[uint64]int{},
		stackCmds: map[uint64]bool{}, stackGiven: map[stackDevice]time.Time{}, stackRunning: map[stackDevice]time.Time{}, tunnelOpen: map[int]bool{}}
	for _, k := range kinds {
		r.kinds[k] = &kindStats{}
	}
	return r
}

func (r *recorder) exchange(dev int, kind string, took time.Duration, wb wireBytes, dialed bool) {
	ms := float64(took) / float64(time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(kind, ms, wb, dialed)
	r.window = append(r.window, ms)
	r.windowN++
	r.up[dev] = true
}

// addLocked counts one exchange of kind; the caller holds mu.
func (r *recorder) addLocked(kind string, ms float64, wb wireBytes, dialed bool) {
	k := r.kinds[kind]
	k.n++
	k.lat = append(k.lat, ms)
	k.body += wb.body
	k.socket += wb.socket
	if dialed {
		k.dialed++
	} else {
		k.bodyKept += wb.body
		k.socketKept += wb.socket
	}
}

// listed records one environments list page served in took.
func (r *recorder) listed(took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listLat = append(r.listLat, float64(took)/float64(time.Millisecond))
}

func (r *recorder) fail(kind string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[kind]++
	if _, ok := r.errSample[kind]; !ok && err != nil {
		r.errSample[kind] = err.Error()
	}
}

func (r *recorder) commandQueued(id uint64, at time.Time) {
	r.mu.Lock()
	r.queued[id] = at
	r.mu.Unlock()
}

func (r *recorder) commandDelivered(id uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.delivered[id]; !ok {
		r.delivered[id] = at
	}
}

func (r *recorder) commandAcked(id uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ackCount[id]++
	if _, ok := r.acked[id]; !ok {
		r.acked[id] = at
	}
}

// stackCommand notes that command id, given to dev, is stack's.
func (r *recorder) stackCommand(id, stack uint64, dev int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stackCmds[id] = true
	k := stackDevice{stack, dev}
	if _, ok := r.stackGiven[k]; !ok {
		r.stackGiven[k] = at
	}
}

// stackReported notes that an answered request of dev reported stack
// running.
func (r *recorder) stackReported(stack uint64, dev int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := stackDevice{stack, dev}
	if _, ok := r.stackRunning[k]; !ok {
		r.stackRunning[k] = at
	}
}

func (r *recorder) stackCreated(s *stackRun) {
	r.mu.Lock()
	r.stack = s
	r.mu.Unlock()
}

// stackPending is how many of the stack's devices have not reported it
// running; 0 when there is no stack.
func (r *recorder) stackPending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stack == nil {
		return 0
	}
	n := 0
	for _, d := range r.stack.targets {
		if _, ok := r.stackRunning[stackDevice{r.stack.id, d}]; !ok {
			n++
		}
	}
	return n
}

func (r *recorder) tunnelAsking() {
	r.mu.Lock()
	r.tunnelAsked++
	r.mu.Unlock()
}

// tunnelOpened notes that the API answered dev's tunnel open after took.
func (r *recorder) tunnelOpened(dev int, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tunnelOpen[dev] = true
	r.tunnelOpenLat = append(r.tunnelOpenLat, float64(took)/float64(time.Millisecond))
}

func (r *recorder) isTunnelOpen(dev int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tunnelOpen[dev]
}

// tunnelUp counts a device's tunnel coming up (+1) or going down (-1).
func (r *recorder) tunnelUp(delta int) {
	r.mu.Lock()
	r.tunnelsUp += delta
	r.mu.Unlock()
}

func (r *recorder) tunnelRequestSent() {
	r.mu.Lock()
	r.tunnelSent++
	r.mu.Unlock()
}

// tunnelRequestDone counts a request through a tunnel; a nil err was
// answered by the device, in took, with body bytes.
func (r *recorder) tunnelRequestDone(took time.Duration, body int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tunnelDone++
	if err != nil {
		return
	}
	r.tunnelOK++
	r.addLocked(kindTunnel, float64(took)/float64(time.Millisecond), wireBytes{body: body}, false)
}

// settled says whether nothing is owed: every queued command acked, the
// stack running on every device it targets, no tunnel request in flight.
func (r *recorder) settled() bool {
	if r.unacked() > 0 || r.stackPending() > 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tunnelDone == r.tunnelSent
}

// unacked is how many queued commands have no ack yet.
func (r *recorder) unacked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id := range r.queued {
		if r.ackCount[id] == 0 {
			n++
		}
	}
	return n
}

// tick is the window since the last call: exchanges and their p99; and
// so far: devices up, errors, tunnels up on the devices' side.
type tick struct {
	n       int64
	p99     float64
	up      int
	errs    int64
	tunnels int
}

// tick takes the window since the last call.
func (r *recorder) tick() tick {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := tick{n: r.windowN, p99: quantile(r.window, 0.99), up: len(r.up), tunnels: r.tunnelsUp}
	r.window, r.windowN = r.window[:0], 0
	for _, v := range r.errors {
		t.errs += v
	}
	return t
}

// quantile is the q-quantile of xs (nearest rank), sorting xs; 0 for none.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// since is the milliseconds from each queued command to its time in m.
func (r *recorder) since(m map[uint64]time.Time) []float64 {
	out := make([]float64, 0, len(m))
	for id, at := range m {
		if q, ok := r.queued[id]; ok {
			out = append(out, float64(at.Sub(q))/float64(time.Millisecond))
		}
	}
	return out
}

func (r *recorder) isUp(dev int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up[dev]
}
