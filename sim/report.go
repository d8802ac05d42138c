package sim

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Report is what a run measured. Every figure is measured, none estimated,
// but for the per-day bytes, which scale the measured mean exchange to the
// simulated frequency.
type Report struct {
	Started time.Time `json:"started"`
	// Devices is the async devices, Standard the standard ones; DevicesUp
	// counts the devices of both modes that had an exchange answered,
	// StandardUp the standard ones among them.
	Devices     int `json:"devices"`
	Standard    int `json:"standardDevices"`
	DevicesUp   int `json:"devicesUp"`
	StandardUp  int `json:"standardUp"`
	SourceAddrs int `json:"sourceAddresses"`
	// FreqSeconds is the async frequencies and the standard snapshot
	// frequency; PollSeconds the standard devices' poll interval.
	FreqSeconds    int     `json:"freqSeconds"`
	PollSeconds    int     `json:"pollSeconds"`
	CommandsPerSec float64 `json:"commandsPerSecond"`
	ChangesPerHour float64 `json:"changesPerHour"`
	Capture        string  `json:"capture"`
	Containers     int     `json:"containersPerDevice"`
	// Seconds from the first device's start to the last exchange.
	Seconds         float64 `json:"seconds"`
	Exchanges       int64   `json:"exchanges"`
	ExchangesPerSec float64 `json:"exchangesPerSecond"`
	// Latency per exchange kind (first, snapshot, commands, ping, poll,
	// stack, tunnel), in ms, from sending the request to reading the whole
	// answer; a tunnel request's from the API call to its answer.
	Latency map[string]Quantiles `json:"latencyMs"`
	// Errors by kind, with the first message of each.
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
	Server       ServerStats       `json:"server"`
	// Simulator is this process, whose CPU the server's shared.
	Simulator ProcessStats `json:"simulator"`
	// Warnings say what may have limited the run.
	Warnings []string `json:"warnings,omitempty"`
	// Bytes per exchange kind, per exchange of one device. A tunnel
	// request's are its answer's body as the API client read it: its
	// socket bytes are not counted.
	Bytes map[string]Bytes `json:"bytesPerExchange"`
	// PerDevicePerDay is bytes per async device and day at the simulated
	// frequency: one exchange per FreqSeconds, of the measured mean size of
	// the async exchanges after the first contact (on a kept connection,
	// their mix of pings, deltas and acks as this run had it; stack
	// deliveries left out). PerStandardDevicePerDay is the same for a
	// standard device's polls, one per PollSeconds.
	PerDevicePerDay         DayBytes `json:"bytesPerDevicePerDay"`
	PerStandardDevicePerDay DayBytes `json:"bytesPerStandardDevicePerDay"`
	Commands                Commands `json:"commands"`
	// EnvironmentsList is the latency of the environments list (GET
	// /api/environments, 100 a page, sorted by name) asked every
	// ListEvery during the run, in ms.
	EnvironmentsList Quantiles `json:"environmentsListMs"`
	// Tunnels and Stack are there when the run had them.
	Tunnels *Tunnels `json:"tunnels,omitempty"`
	Stack   *Stack   `json:"stack,omitempty"`
	Samples []Sample `json:"samples"`
}

// Tunnels the simulator asked of standard devices, and the requests sent
// through them.
type Tunnels struct {
	// Tunnels were to be opened, Busy of them carrying RequestsPerSec.
	Tunnels        int     `json:"tunnels"`
	Busy           int     `json:"busy"`
	RequestsPerSec float64 `json:"requestsPerSecond"`
	// Asked is the open calls made, Opened those answered; Open is their
	// latency (the server asks at the device's next poll and waits for
	// the tunnel), in ms. UpAtEnd is the tunnels up on the devices' side
	// at the end.
	Asked   int       `json:"asked"`
	Opened  int       `json:"opened"`
	Open    Quantiles `json:"openMs"`
	UpAtEnd int       `json:"upAtEnd"`
	// Requests sent through the tunnels, and those the device answered.
	Requests int64 `json:"requests"`
	Answered int64 `json:"answered"`
}

// Stack is the run's edge stack over an edge group of GroupSize devices.
type Stack struct {
	GroupSize int    `json:"groupSize"`
	ID        uint64 `json:"id,omitempty"`
	Version   uint64 `json:"version,omitempty"`
	// Targets is the devices of its group; Delivered those given its
	// deploy, Running those whose report of it running was answered.
	Targets   int `json:"targets"`
	Delivered int `json:"delivered"`
	Running   int `json:"running"`
	// From the creating call to each device's answer bringing the deploy,
	// and to the answer to its report of it running, in ms; AllRunningMs
	// to the last device's, when every device reported.
	Delivery     Quantiles `json:"deliveryMs"`
	Reported     Quantiles `json:"runningMs"`
	AllRunningMs float64   `json:"allRunningMs,omitempty"`
	// The stack commands given to the devices, and their acks.
	Commands          int `json:"commands"`
	Acked             int `json:"acked"`
	AckedMoreThanOnce int `json:"ackedMoreThanOnce"`
}

// Quantiles of one kind's latencies.
type Quantiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Bytes on the wire of one exchange kind: bodies as sent both ways, and
// socket bytes (TLS records both ways: bodies, HTTP headers, TLS framing,
// and the handshake when the exchange dialed). TCP/IP is not counted.
type Bytes struct {
	Exchanges int64   `json:"exchanges"`
	Body      float64 `json:"body"`
	Socket    float64 `json:"socket"`
	// SocketKept is the mean over exchanges on a kept connection (no dial).
	SocketKept float64 `json:"socketKept"`
	Dialed     int64   `json:"dialed"`
}

// DayBytes is bytes per device and day.
type DayBytes struct {
	Body   float64 `json:"body"`
	Socket float64 `json:"socket"`
}

// ServerStats is the server process as /proc and its metrics saw it.
type ServerStats struct {
	PID        int     `json:"pid,omitempty"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// CPUCores is CPUSeconds over the run's seconds.
	CPUCores      float64 `json:"cpuCores"`
	RSSBytes      int64   `json:"rssBytes"`
	RSSMaxBytes   int64   `json:"rssMaxBytes"`
	Goroutines    int     `json:"goroutines"`
	GoroutinesMax int     `json:"goroutinesMax"`
}

// ProcessStats is a process's CPU seconds and resident memory.
type ProcessStats struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSBytes   int64   `json:"rssBytes"`
}

// Commands queued through the API and acked by the devices.
type Commands struct {
	Queued    int `json:"queued"`
	Delivered int `json:"delivered"`
	Acked     int `json:"acked"`
	Unacked   int `json:"unacked"`
	// AckedMoreThanOnce counts commands whose ack more than one answered
	// request carried (the device never sends an answered ack again).
	AckedMoreThanOnce int `json:"ackedMoreThanOnce"`
	// Queued -> the answer that brought it, and queued -> the answer to
	// the request that carried its ack, in ms.
	Delivery Quantiles `json:"deliveryMs"`
	Ack      Quantiles `json:"ackMs"`
}

// Sample is one progress tick.
type Sample struct {
	T               float64 `json:"t"` // seconds since start
	Up              int     `json:"up"`
	ExchangesPerSec float64 `json:"exchangesPerSecond"`
	P99             float64 `json:"p99Ms"`
	Errors          int64   `json:"errors"`
	// Tunnels up on the devices' side.
	Tunnels    int     `json:"tunnels,omitempty"`
	RSSBytes   int64   `json:"rssBytes,omitempty"`
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
	CPUCores   float64 `json:"cpuCores,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	// The server's store write transactions since the last sample (its
	// outpost_store_write_seconds): per second, and their mean duration.
	StoreWritesPerSec float64 `json:"storeWritesPerSecond,omitempty"`
	StoreWriteMs      float64 `json:"storeWriteMs,omitempty"`
}

func quantiles(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{}
	}
	q := Quantiles{Count: int64(len(xs)), P50: quantile(xs, 0.5), P99: quantile(xs, 0.99), Max: slices.Max(xs)}
	q.P50, q.P99, q.Max = round3(q.P50), round3(q.P99), round3(q.Max)
	return q
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// fill completes r from the recorder's totals.
func (r *Report) fill(rec *recorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r.DevicesUp = len(rec.up)
	for n := range rec.up {
		if n > r.Devices {
			r.StandardUp++
		}
	}
	r.Latency, r.Bytes = map[string]Quantiles{}, map[string]Bytes{}
	for _, k := range kinds {
		ks := rec.kinds[k]
		r.Exchanges += ks.n
		if ks.n == 0 {
			continue
		}
		r.Latency[k] = quantiles(ks.lat)
		b := Bytes{Exchanges: ks.n, Dialed: ks.dialed, Body: round3(float64(ks.body) / float64(ks.n)), Socket: round3(float64(ks.socket) / float64(ks.n))}
		if kept := ks.n - ks.dialed; kept > 0 {
			b.SocketKept = round3(float64(ks.socketKept) / float64(kept))
		}
		r.Bytes[k] = b
	}
	if r.Seconds > 0 {
		r.ExchangesPerSec = round3(float64(r.Exchanges) / r.Seconds)
	}
	r.PerDevicePerDay = rec.perDay(asyncDay, r.FreqSeconds)
	r.PerStandardDevicePerDay = rec.perDay(standardDay, r.PollSeconds)
	r.Errors, r.ErrorSamples = map[string]int64{}, map[string]string{}
	for k, v := range rec.errors {
		r.Errors[k] = v
		r.ErrorSamples[k] = rec.errSample[k]
	}
	c := &r.Commands
	c.Queued, c.Delivered = len(rec.queued), 0
	for id := range rec.queued {
		if _, ok := rec.delivered[id]; ok {
			c.Delivered++
		}
		switch n := rec.ackCount[id]; {
		case n == 0:
			c.Unacked++
		case n > 1:
			c.AckedMoreThanOnce++
			c.Acked++
		default:
			c.Acked++
		}
	}
	c.Delivery, c.Ack = quantiles(rec.since(rec.delivered)), quantiles(rec.since(rec.acked))
	r.EnvironmentsList = quantiles(rec.listLat)
	if t := r.Tunnels; t != nil {
		t.Asked, t.Opened, t.Open = rec.tunnelAsked, len(rec.tunnelOpen), quantiles(rec.tunnelOpenLat)
		if len(r.Samples) > 0 {
			t.UpAtEnd = r.Samples[len(r.Samples)-1].Tunnels // the last sample's, taken with the fleet up
		}
		t.Requests, t.Answered = rec.tunnelSent, rec.tunnelOK
	}
	if r.Stack != nil {
		rec.fillStack(r.Stack)
	}
}

// perDay is bytes per device and day of one exchange every freq seconds,
// each of the mean size of the exchanges of kinds on a kept connection;
// the caller holds rec.mu.
func (rec *recorder) perDay(kinds []string, freq int) DayBytes {
	var n, body, socket float64
	for _, k := range kinds {
		ks := rec.kinds[k]
		n += float64(ks.n - ks.dialed)
		body += float64(ks.bodyKept)
		socket += float64(ks.socketKept)
	}
	if n == 0 || freq <= 0 {
		return DayBytes{}
	}
	perDay := 86400 / float64(freq)
	return DayBytes{Body: math.Round(body / n * perDay), Socket: math.Round(socket / n * perDay)}
}

// fillStack completes s from the stack's records; the caller holds rec.mu.
func (rec *recorder) fillStack(s *Stack) {
	for id := range rec.stackCmds {
		s.Commands++
		switch n := rec.ackCount[id]; {
		case n > 1:
			s.AckedMoreThanOnce++
			s.Acked++
		case n == 1:
			s.Acked++
		}
	}
	st := rec.stack
	if st == nil {
		return
	}
	s.ID, s.Version, s.Targets = st.id, st.version, len(st.targets)
	ms := func(t time.Time) float64 { return float64(t.Sub(st.created)) / float64(time.Millisecond) }
	var given, running []float64
	var last time.Time
	for _, d := range st.targets {
		k := stackDevice{st.id, d}
		if t, ok := rec.stackGiven[k]; ok {
			given = append(given, ms(t))
		}
		if t, ok := rec.stackRunning[k]; ok {
			running = append(running, ms(t))
			if t.After(last) {
				last = t
			}
		}
	}
	s.Delivered, s.Running = len(given), len(running)
	s.Delivery, s.Reported = quantiles(given), quantiles(running)
	if s.Running == s.Targets && s.Targets > 0 {
		s.AllRunningMs = round3(ms(last))
	}
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeHTML writes a self-contained page: the run's figures and SVG line
// charts over time, no script.
func (r *Report) writeHTML(path string) error {
	var b strings.Builder
	if err := page.Execute(&b, r); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"chart":     func(r *Report, what string) template.HTML { return r.chart(what) },
	"mb":        func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) },
	"listEvery": func() float64 { return ListEvery.Seconds() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Outpost fleet simulation</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:1em}svg{background:#fafafa;border:1px solid #ddd}
</style></head><body>
<h1>Outpost fleet simulation</h1>
<p>{{.Started.UTC.Format "2006-01-02 15:04:05 UTC"}}: {{.Devices}} async devices at {{.FreqSeconds}} s and {{.Standard}} standard devices polling every {{.PollSeconds}} s
({{.DevicesUp}} up, {{.StandardUp}} of them standard), {{.CommandsPerSec}} commands/s, {{.ChangesPerHour}} of containers changing per hour, capture {{.Capture}} ({{.Containers}} containers),
{{printf "%.0f" .Seconds}} s over {{.SourceAddrs}} source addresses.</p>
<p><b>{{.Exchanges}}</b> exchanges, <b>{{printf "%.1f" .ExchangesPerSec}}</b>/s.
Server: {{printf "%.1f" .Server.CPUSeconds}} CPU s ({{printf "%.2f" .Server.CPUCores}} cores), RSS {{mb .Server.RSSBytes}} (max {{mb .Server.RSSMaxBytes}}), {{.Server.Goroutines}} goroutines (max {{.Server.GoroutinesMax}}).
The simulator: {{printf "%.1f" .Simulator.CPUSeconds}} CPU s, RSS {{mb .Simulator.RSSBytes}}.</p>
{{range .Warnings}}<p><b>Warning:</b> {{.}}</p>{{end}}
<h2>Exchanges</h2>
<table><tr><th>kind</th><th>count</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>body B</th><th>socket B</th><th>socket B, kept conn.</th></tr>
{{range $k, $q := .Latency}}{{$b := index $.Bytes $k}}<tr><td>{{$k}}</td><td>{{$q.Count}}</td><td>{{$q.P50}}</td><td>{{$q.P99}}</td><td>{{$q.Max}}</td><td>{{printf "%.0f" $b.Body}}</td>{{if eq $k "tunnel"}}<td>n/a</td><td>n/a</td>{{else}}<td>{{printf "%.0f" $b.Socket}}</td><td>{{printf "%.0f" $b.SocketKept}}</td>{{end}}</tr>
{{end}}</table>
<p>Per async device and day at {{.FreqSeconds}} s: {{printf "%.0f" .PerDevicePerDay.Body}} B of bodies, {{printf "%.0f" .PerDevicePerDay.Socket}} B on the socket (TLS records; TCP/IP not counted).
{{if .Standard}}Per standard device and day, polling every {{.PollSeconds}} s: {{printf "%.0f" .PerStandardDevicePerDay.Body}} B of bodies, {{printf "%.0f" .PerStandardDevicePerDay.Socket}} B on the socket.{{end}}
Tunnel requests count their answers' bodies only.</p>
<p>The environments list (100 a page, by name), asked every {{printf "%.0f" listEvery}} s: {{.EnvironmentsList.Count}} pages, p50 {{.EnvironmentsList.P50}} ms, p99 {{.EnvironmentsList.P99}} ms, max {{.EnvironmentsList.Max}} ms.</p>
<h2>Commands</h2>
<table><tr><th>queued</th><th>delivered</th><th>acked</th><th>unacked</th><th>acked twice</th><th>delivery p50 / p99 ms</th><th>ack p50 / p99 / max ms</th></tr>
<tr><td>{{.Commands.Queued}}</td><td>{{.Commands.Delivered}}</td><td>{{.Commands.Acked}}</td><td>{{.Commands.Unacked}}</td><td>{{.Commands.AckedMoreThanOnce}}</td>
<td>{{.Commands.Delivery.P50}} / {{.Commands.Delivery.P99}}</td><td>{{.Commands.Ack.P50}} / {{.Commands.Ack.P99}} / {{.Commands.Ack.Max}}</td></tr></table>
{{with .Tunnels}}<h2>Tunnels</h2>
<table><tr><th>tunnels</th><th>asked</th><th>opened</th><th>open p50 / p99 / max ms</th><th>up at the end</th><th>busy</th><th>requests/s</th><th>requests</th><th>answered</th></tr>
<tr><td>{{.Tunnels}}</td><td>{{.Asked}}</td><td>{{.Opened}}</td><td>{{.Open.P50}} / {{.Open.P99}} / {{.Open.Max}}</td><td>{{.UpAtEnd}}</td><td>{{.Busy}}</td><td>{{.RequestsPerSec}}</td><td>{{.Requests}}</td><td>{{.Answered}}</td></tr></table>{{end}}
{{with .Stack}}<h2>Edge stack</h2>
<table><tr><th>group</th><th>stack</th><th>targets</th><th>delivered</th><th>running</th><th>delivery p50 / p99 / max ms</th><th>running p50 / p99 / max ms</th><th>all running ms</th><th>commands</th><th>acked</th><th>acked twice</th></tr>
<tr><td>{{.GroupSize}}</td><td>{{.ID}} v{{.Version}}</td><td>{{.Targets}}</td><td>{{.Delivered}}</td><td>{{.Running}}</td><td>{{.Delivery.P50}} / {{.Delivery.P99}} / {{.Delivery.Max}}</td>
<td>{{.Reported.P50}} / {{.Reported.P99}} / {{.Reported.Max}}</td><td>{{.AllRunningMs}}</td><td>{{.Commands}}</td><td>{{.Acked}}</td><td>{{.AckedMoreThanOnce}}</td></tr></table>{{end}}
<h2>Errors</h2>
{{if .Errors}}<table><tr><th>kind</th><th>count</th><th>first</th></tr>{{range $k, $v := .Errors}}<tr><td>{{$k}}</td><td>{{$v}}</td><td style="text-align:left">{{index $.ErrorSamples $k}}</td></tr>{{end}}</table>{{else}}<p>None.</p>{{end}}
<h2>Over time</h2>
<div class="charts">{{chart . "rate"}}{{chart . "p99"}}{{chart . "rss"}}{{chart . "cpu"}}{{chart . "writes"}}{{chart . "goroutines"}}</div>
</body></html>
`))

// chart draws one series of the samples as an SVG line chart.
func (r *Report) chart(what string) template.HTML {
	var title string
	var val func(Sample) float64
	switch what {
	case "rate":
		title, val = "exchanges/s", func(s Sample) float64 { return s.ExchangesPerSec }
	case "p99":
		title, val = "p99 latency, ms", func(s Sample) float64 { return s.P99 }
	case "rss":
		title, val = "server RSS, MiB", func(s Sample) float64 { return float64(s.RSSBytes) / (1 << 20) }
	case "cpu":
		title, val = "server CPU, cores", func(s Sample) float64 { return s.CPUCores }
	case "writes":
		title, val = "server store writes/s", func(s Sample) float64 { return s.StoreWritesPerSec }
	case "goroutines":
		title, val = "server goroutines", func(s Sample) float64 { return float64(s.Goroutines) }
	}
	return template.HTML(svgLine(title, r.Samples, val)) //nolint:gosec // numbers and a fixed title only
}

func svgLine(title string, ss []Sample, val func(Sample) float64) string {
	const w, h, left, right, top, bottom = 520.0, 240.0, 56.0, 12.0, 28.0, 30.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="13" font-weight="bold">%s</text>`, left, template.HTMLEscapeString(title))
	if len(ss) == 0 {
		b.WriteString(`<text x="60" y="120">no samples</text></svg>`)
		return b.String()
	}
	tMax, vMax := ss[len(ss)-1].T, 0.0
	for _, s := range ss {
		vMax = max(vMax, val(s))
	}
	tMax, vMax = max(tMax, 1), niceCeil(vMax)
	x := func(t float64) float64 { return left + (w-left-right)*t/tMax }
	y := func(v float64) float64 { return h - bottom - (h-top-bottom)*v/vMax }
	for i := 0; i <= 4; i++ {
		v := vMax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, w-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, left-4, y(v)+4, shortNum(v))
	}
	for i := 0; i <= 4; i++ {
		t := tMax * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%.0fs</text>`, x(t), h-bottom+16, t)
	}
	b.WriteString(`<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="`)
	for _, s := range ss {
		fmt.Fprintf(&b, "%.1f,%.1f ", x(s.T), y(val(s)))
	}
	b.WriteString(`"/></svg>`)
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}
