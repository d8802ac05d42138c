package server

import (
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on their own registry.
type metrics struct {
	reg        *prometheus.Registry
	exchanges  *prometheus.CounterVec // kind, result
	bytesIn    prometheus.Counter
	bytesOut   prometheus.Counter
	snapshots  *prometheus.CounterVec // kind (full, delta), result (stored, send_full)
	storeWrite prometheus.Histogram
	slowDowns  *prometheus.CounterVec // kind (sync, poll, waiting, busy)
}

func newMetrics(online, waiting, inflight func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_edge_exchanges_total", Help: "Edge exchanges by kind (sync, poll) and result (ok, refused, error).",
		}, []string{"kind", "result"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_edge_body_bytes_received_total", Help: "Edge request body bytes as received (compressed).",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_edge_body_bytes_sent_total", Help: "Edge answer body bytes as sent (compressed).",
		}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_snapshot_pushes_total", Help: "Snapshot pushes by kind (full, delta) and result (stored, send_full).",
		}, []string{"kind", "result"}),
		slowDowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_edge_slow_downs_total", Help: "Edge requests answered slow_down, by kind: sync, poll, waiting (the device called far faster than its frequency allows) or busy (the in-flight byte budget was spent).",
		}, []string{"kind"}),
		storeWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outpost_store_write_seconds", Help: "Duration of store write transactions.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	m.reg.MustRegister(m.exchanges, m.bytesIn, m.bytesOut, m.snapshots, m.storeWrite, m.slowDowns,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_devices_online", Help: "Devices that checked in within two of their own ping intervals.",
		}, online),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_waiting_room_devices", Help: "Untrusted devices in the waiting room.",
		}, waiting),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_edge_inflight_bytes", Help: "Bytes edge requests in flight hold, read and inflated (bounded by --edge-memory).",
		}, inflight),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// mux serves GET /metrics and nothing else, for the metrics listener.
func (m *metrics) mux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	// Profiles for measuring the server under a fleet (make bench-fleet):
	// the listener is the operator's own, on loopback by default.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// observeWrite records one store write transaction.
func (m *metrics) observeWrite(d time.Duration) { m.storeWrite.Observe(d.Seconds()) }

// edge wraps an edge endpoint: it counts the exchange by its answer's status
// and the answer's bytes.
func (m *metrics) edge(kind string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		h(cw, r)
		result := "ok"
		switch {
		case cw.status >= 500:
			result = "error"
		case cw.status >= 400:
			result = "refused"
		}
		m.exchanges.WithLabelValues(kind, result).Inc()
		m.bytesOut.Add(float64(cw.n))
	}
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int
}

func (c *countingWriter) WriteHeader(status int) {
	c.status = status
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (body read
// deadlines) through the count.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
