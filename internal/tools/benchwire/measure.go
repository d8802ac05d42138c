package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// kind is a kind of exchange.
type kind int

const (
	kindIdle  kind = iota // ping and command pull, nothing changed
	kindDelta             // the same with one container stopped
	kindFull              // first contact's full snapshot (setup)
)

func (k kind) String() string { return [...]string{"idle", "delta", "full"}[k] }

// device is one side's client of one profile: Outpost's or the Portainer way's.
type device interface {
	name() string
	exchange(ctx context.Context, k kind) (bodies int64, err error)
	// after is what the client does once an exchange is over and the next
	// is gap away (the agent's sync loop calls its client's Idle).
	after(gap time.Duration)
	// holds is how long the client keeps its idle connection when the next
	// exchange is gap away.
	holds(gap time.Duration) time.Duration
	close()
	socket() int64
	dialed() int64
}

// cost is what a measured step moved: socket (TLS record) bytes, IP bytes
// and packets of the device's port, and the bodies as sent.
type cost struct {
	socket, ip, packets, bodies float64
	dials                       int64
}

func (c cost) div(n float64) cost {
	return cost{socket: c.socket / n, ip: c.ip / n, packets: c.packets / n, bodies: c.bodies / n, dials: c.dials}
}

// results are one side's measurements.
type results struct {
	first, idle, delta, reconnect, gap cost
	hold                               time.Duration // how long it keeps an idle connection an hour from the next exchange
	how                                string        // how the reconnects were made, when the side can say
}

// conner is a side that can say how its last connection was made.
type conner interface{ how() string }

// runDevice is the device side: it stages two environments, then measures
// both sides' exchanges and prints the table.
func runDevice(addr, password string, o options) error {
	ctx := context.Background()
	caps, err := corpus.Load(o.captures)
	if err != nil {
		return err
	}
	var d50 *snapshot.Snapshot
	for _, c := range caps {
		if len(c.Docker.Containers) == 50 {
			d50 = c.Docker
		}
	}
	if d50 == nil {
		return fmt.Errorf("no 50-container capture in %s", o.captures)
	}
	m, err := newMeter()
	if err != nil {
		return err
	}
	outpostURL := fmt.Sprintf("https://%s:%d", addr, outpostPort)
	portainerURL := fmt.Sprintf("https://%s:%d", addr, portainerPort)
	keys, err := stage(ctx, outpostURL, password)
	if err != nil {
		return err
	}
	// Let the API connection's close finish before anything is counted.
	if _, err := m.settle(time.Second); err != nil {
		return err
	}
	op60, err := newOutpost(keys[0], d50)
	if err != nil {
		return err
	}
	opMeter, err := newOutpost(keys[1], d50)
	if err != nil {
		return err
	}
	pt60 := newPortainer(portainerURL, 1, d50)
	ptMeter := newPortainer(portainerURL, 2, d50)
	res := map[string]*results{"outpost": {}, "portainer": {}}

	fmt.Fprintf(os.Stderr, "benchwire: Portainer's defaults (60/60/60 s): exchanges on a kept connection\n")
	for _, d := range []device{op60, pt60} {
		r := res[d.name()]
		if r.first, err = measure(m, d, func() (int64, error) {
			b, err := d.exchange(ctx, kindIdle) // first contact
			if err != nil {
				return 0, err
			}
			f, err := d.exchange(ctx, kindFull)
			return b + f, err
		}); err != nil {
			return err
		}
		d.after(60 * time.Second)
		if r.idle, err = measureN(m, d, o.n, kindIdle, 60*time.Second); err != nil {
			return err
		}
		if r.delta, err = measureN(m, d, 1, kindDelta, 60*time.Second); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "benchwire: holding both kept connections idle for %v of real time\n", o.gap)
	if err := holdIdle(m, o.gap, res, op60, pt60); err != nil {
		return err
	}
	op60.close()
	pt60.close()
	if _, err := m.settle(time.Second); err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "benchwire: metered profile (1 h/6 h/1 h): reconnect exchanges\n")
	for _, d := range []device{opMeter, ptMeter} {
		r := res[d.name()]
		if _, err := d.exchange(ctx, kindIdle); err != nil {
			return err
		}
		if _, err := d.exchange(ctx, kindFull); err != nil {
			return err
		}
		end(d)
		if _, err := m.settle(time.Second); err != nil {
			return err
		}
		var sum cost
		const reconnects = 3
		for range reconnects {
			c, err := measure(m, d, func() (int64, error) {
				b, err := d.exchange(ctx, kindIdle)
				end(d)
				return b, err
			})
			if err != nil {
				return err
			}
			sum = add(sum, c)
		}
		r.reconnect = sum.div(reconnects)
		r.hold = d.holds(time.Hour)
		if c, ok := d.(conner); ok {
			r.how = c.how()
		}
		if r.reconnect.dials != reconnects {
			return fmt.Errorf("%s: %d dials for %d reconnect exchanges", d.name(), r.reconnect.dials, reconnects)
		}
	}
	report(os.Stdout, res, o)
	return nil
}

// end is what happens after an exchange an hour from the next: the client's
// own decision, and if it keeps the connection, the close at the end of
// its hold (its keepalives meanwhile are composed from the measured rate).
func end(d device) {
	d.after(time.Hour)
	if d.holds(time.Hour) > 0 {
		d.close()
	}
}

func add(a, b cost) cost {
	return cost{socket: a.socket + b.socket, ip: a.ip + b.ip, packets: a.packets + b.packets, bodies: a.bodies + b.bodies, dials: a.dials + b.dials}
}

// measure counts what fn moves on d's port and socket, closes included,
// once the link is quiet again.
func measure(m *meter, d device, fn func() (int64, error)) (cost, error) {
	c0, err := m.settle(500 * time.Millisecond)
	if err != nil {
		return cost{}, err
	}
	s0, d0 := d.socket(), d.dialed()
	bodies, err := fn()
	if err != nil {
		return cost{}, err
	}
	c1, err := m.settle(500 * time.Millisecond)
	if err != nil {
		return cost{}, err
	}
	a, b := c0[d.name()], c1[d.name()]
	return cost{socket: float64(d.socket() - s0), ip: float64(b.bytes - a.bytes), packets: float64(b.packets - a.packets),
		bodies: float64(bodies), dials: d.dialed() - d0}, nil
}

// measureN averages n exchanges of kind k on the kept connection, each
// followed by the client's own decision for a next exchange gap away.
func measureN(m *meter, d device, n int, k kind, gap time.Duration) (cost, error) {
	var sum cost
	for range n {
		c, err := measure(m, d, func() (int64, error) {
			b, err := d.exchange(context.Background(), k)
			d.after(gap)
			return b, err
		})
		if err != nil {
			return cost{}, err
		}
		sum = add(sum, c)
	}
	if sum.dials != 0 {
		return cost{}, fmt.Errorf("%s: the kept connection was dialed again %d times", d.name(), sum.dials)
	}
	return sum.div(float64(n)), nil
}

// holdIdle holds every device's kept connection idle for gap of real time
// and counts what moves meanwhile (keepalive probes and their ACKs), then
// makes one more exchange to check the connection is still the same.
func holdIdle(m *meter, gap time.Duration, res map[string]*results, ds ...device) error {
	c0, err := m.settle(500 * time.Millisecond)
	if err != nil {
		return err
	}
	s0 := map[string]int64{}
	for _, d := range ds {
		s0[d.name()] = d.socket()
	}
	time.Sleep(gap)
	c1, err := m.read()
	if err != nil {
		return err
	}
	for _, d := range ds {
		a, b := c0[d.name()], c1[d.name()]
		res[d.name()].gap = cost{socket: float64(d.socket() - s0[d.name()]), ip: float64(b.bytes - a.bytes), packets: float64(b.packets - a.packets)}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	for i, d := range ds {
		wg.Go(func() {
			n := d.dialed()
			if _, err := d.exchange(context.Background(), kindIdle); err != nil {
				errs[i] = err
			} else if d.dialed() != n {
				errs[i] = fmt.Errorf("%s: the connection held idle for %v was dialed again", d.name(), gap)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stage logs in and pre-stages the two async environments of the
// profiles, returning their edge keys.
func stage(ctx context.Context, base, password string) ([]protocol.EdgeKey, error) {
	cl := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the server's self-signed certificate
		DisableKeepAlives: true,
	}}
	call := func(path, token string, body, out any) error {
		b, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s: %s", path, resp.Status, raw)
		}
		return json.Unmarshal(raw, out)
	}
	var auth struct{ Token string }
	if err := call("/api/auth", "", map[string]string{"username": "admin", "password": password}, &auth); err != nil {
		return nil, err
	}
	var keys []protocol.EdgeKey
	for _, p := range []struct {
		name string
		f    protocol.Frequencies
	}{{"defaults-60s", freq60}, {"metered", freqMeter}} {
		var env struct {
			EdgeKey string `json:"edgeKey"`
		}
		if err := call("/api/environments", auth.Token, map[string]any{"name": p.name, "mode": "async", "frequencies": p.f}, &env); err != nil {
			return nil, err
		}
		k, err := protocol.ParseEdgeKey(env.EdgeKey)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Schedules the day is composed from.
const (
	day           = 24 * time.Hour
	changesPerDay = 24 // one container change an hour
	meteredDeltas = 4  // the 6-hourly snapshot slots, each carrying a change
	month         = 30 // days
)

// report prints the table.
func report(w io.Writer, res map[string]*results, o options) {
	op, pt := res["outpost"], res["portainer"]
	perGap := func(r *results) cost { return r.gap.div(float64(o.gap) / float64(time.Minute)) } // per 60 s
	rate := func(r *results) cost { return r.gap.div(o.gap.Seconds()) }                         // per second
	day60 := func(r *results) cost {
		ex := float64(day / time.Minute)
		deltaExtra := sub(r.delta, r.idle)
		return add(add(r.idle.div(1/ex), deltaExtra.div(1.0/changesPerDay)), perGap(r).div(1/ex))
	}
	dayMetered := func(r *results) cost {
		ex := float64(day / time.Hour)
		deltaExtra := sub(r.delta, r.idle)
		held := rate(r).div(1 / r.hold.Seconds())
		return add(add(r.reconnect.div(1/ex), deltaExtra.div(1.0/meteredDeltas)), held.div(1/ex))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tOutpost\t\tPortainer way\t\tratio\t\n")
	fmt.Fprintf(tw, "\tsocket B\tIP B\tsocket B\tIP B\t(IP)\t\n")
	row := func(name string, a, b cost) {
		ratio := "-"
		if a.ip > 0 {
			ratio = fmt.Sprintf("%.1fx", b.ip/a.ip)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", name, num(a.socket), num(a.ip), num(b.socket), num(b.ip), ratio)
	}
	row("idle exchange, kept connection", op.idle, pt.idle)
	row("one container stopped (extra)", sub(op.delta, op.idle), sub(pt.delta, pt.idle))
	row("reconnect exchange (resumed TLS, ping+command, close)", op.reconnect, pt.reconnect)
	row(fmt.Sprintf("kept connection idle for 60 s (measured over %v)", o.gap), perGap(op), perGap(pt))
	row("per day, 60/60/60 s, idle, 1 change/h [composed]", day60(op), day60(pt))
	row("per day, metered 1 h/6 h/1 h [composed]", dayMetered(op), dayMetered(pt))
	row(fmt.Sprintf("per month (%d days), metered [composed]", month), dayMetered(op).div(1.0/month), dayMetered(pt).div(1.0/month))
	tw.Flush()

	hdr := (op.idle.ip - op.idle.socket) / op.idle.packets
	floor := op.idle.bodies + 3*hdr
	fmt.Fprintf(w, "\nIP floor of an idle exchange: its bodies (%.0f B) in one segment each way plus one ACK, %.0f B of TCP/IP header each (measured): %.0f B; Outpost %.0f B = %.2fx, Portainer way %.0f B = %.2fx\n",
		op.idle.bodies, hdr, floor, op.idle.ip, op.idle.ip/floor, pt.idle.ip, pt.idle.ip/floor)
	fmt.Fprintf(w, "packets: idle exchange %.1f / %.1f, reconnect exchange %.1f / %.1f (Outpost / Portainer way)\n",
		op.idle.packets, pt.idle.packets, op.reconnect.packets, pt.reconnect.packets)
	fmt.Fprintf(w, "first contact and full snapshot (not in the days): Outpost %s / %s B, Portainer way %s / %s B (socket / IP)\n",
		num(op.first.socket), num(op.first.ip), num(pt.first.socket), num(pt.first.ip))
	if op.how != "" {
		fmt.Fprintf(w, "Outpost reconnects: %s\n", op.how)
	}
	reconnectExtra := op.reconnect.ip - op.idle.ip
	fmt.Fprintf(w, "keeping a connection idle costs %.0f B/min (Outpost) and %.0f B/min (Portainer way) of IP; a reconnect costs %.0f B (Outpost) and %.0f B (Portainer way) more than an exchange on a kept connection\n",
		rate(op).ip*60, rate(pt).ip*60, reconnectExtra, pt.reconnect.ip-pt.idle.ip)

	const kB, MB = 1000, 1_000_000
	fmt.Fprintf(w, "\nTargets (issue 13):\n")
	target := func(what string, ok bool) {
		verdict := "met"
		if !ok {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "  %-78s %s\n", what, verdict)
	}
	target(fmt.Sprintf("60/60/60 s day, socket <= 250 kB: %s", num(day60(op).socket)), day60(op).socket <= 250*kB)
	target(fmt.Sprintf("idle exchange, socket about 170 B: %.0f B", op.idle.socket), op.idle.socket <= 170)
	target(fmt.Sprintf("idle exchange, IP within 1.3x of TCP's floor: %.2fx", op.idle.ip/floor), op.idle.ip <= 1.3*floor)
	target(fmt.Sprintf("metered month, IP <= 1 MB: %s", num(dayMetered(op).ip*month)), dayMetered(op).ip*month <= MB)

	fmt.Fprintf(w, "\nComposed, not run in real time:\n")
	fmt.Fprintf(w, "  60/60/60 s day: 1440 idle exchanges + %d x the one-change extra + 1440 x the 60 s idle measured on the kept connection.\n", changesPerDay)
	fmt.Fprintf(w, "  metered day: 24 reconnect exchanges + %d x the one-change extra + 24 x the idle connection kept after each\n", meteredDeltas)
	fmt.Fprintf(w, "  (Outpost keeps it %v, the Portainer way %v: the keepalive rate measured over the held %v, times that).\n", op.hold, pt.hold, o.gap)
	fmt.Fprintf(w, "Socket: TLS records both ways. IP: every IPv4 packet to and from the server port (nftables counters in the device's namespace).\n")
	fmt.Fprintf(w, "Both sides: TLS 1.3, X25519, session resumption, ECDSA P-256 certificate, server addressed by IP (a host name adds its length + 9 B to each ClientHello).\n")
}

func sub(a, b cost) cost {
	return cost{socket: a.socket - b.socket, ip: a.ip - b.ip, packets: a.packets - b.packets, bodies: a.bodies - b.bodies}
}

// num prints bytes: exact below 10 kB, then kB and MB (decimal).
func num(b float64) string {
	switch {
	case b < 10_000:
		return fmt.Sprintf("%.0f", b)
	case b < 10_000_000:
		return fmt.Sprintf("%.1f kB", b/1000)
	default:
		return fmt.Sprintf("%.2f MB", b/1e6)
	}
}
