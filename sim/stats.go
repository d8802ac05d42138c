package sim

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Exchange kinds, by what the request carried.
const (
	kindFirst    = "first"    // a signed first contact (enrollment), with the full snapshot
	kindSnapshot = "snapshot" // a snapshot push, full or delta
	kindCommands = "commands" // command acks, no snapshot
	kindPing     = "ping"     // nothing but the check-in and the command pull
)

var kinds = []string{kindFirst, kindSnapshot, kindCommands, kindPing}

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
}

func newRecorder() *recorder {
	r := &recorder{kinds: map[string]*kindStats{}, errors: map[string]int64{}, errSample: map[string]string{}, up: map[int]bool{},
		queued: map[uint64]time.Time{}, delivered: map[uint64]time.Time{}, acked: map[uint64]time.Time{}, ackCount: map[uint64]int{}}
	for _, k := range kinds {
		r.kinds[k] = &kindStats{}
	}
	return r
}

func (r *recorder) exchange(dev int, kind string, took time.Duration, wb wireBytes, dialed bool) {
	ms := float64(took) / float64(time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
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
	r.window = append(r.window, ms)
	r.windowN++
	r.up[dev] = true
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

// tick takes the window since the last call: exchanges, their p99, and
// the devices up and errors so far.
func (r *recorder) tick() (n int64, p99 float64, up int, errs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, p99 = r.windowN, quantile(r.window, 0.99)
	r.window, r.windowN = r.window[:0], 0
	for _, v := range r.errors {
		errs += v
	}
	return n, p99, len(r.up), errs
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
