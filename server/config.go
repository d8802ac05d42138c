package server

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config is what Run needs. Zero fields take the values in Defaults.
type Config struct {
	DataDir    string
	Bind       string // HTTPS API and edge endpoints
	TunnelAddr string // reverse tunnel listener (standard agents)
	PublicURL  string // how agents reach Bind; goes into edge keys
	// MetricsAddr is where /metrics is served, apart from the public
	// port; MetricsOff disables it.
	MetricsAddr   string
	AdminPassword string // initial administrator password; when empty, a one-time setup link is printed
	FlushInterval time.Duration
	Logger        *slog.Logger
	// ClientCA is a PEM file of CA certificates (--client-ca). When set, the
	// edge endpoints refuse a device without a client certificate from it.
	ClientCA string
	// EdgeMemory bounds the bytes all edge requests in flight hold at once,
	// bodies being read and inflated (--edge-memory); past it a device is
	// told to slow down.
	EdgeMemory int64
	// MemoryLimit is the Go runtime's soft memory limit (--memory-limit,
	// like GOMEMLIMIT): 0 leaves the runtime's own (GOMEMLIMIT, if set).
	MemoryLimit int64

	clientCAs *x509.CertPool // loaded from ClientCA by withDefaults
}

// Defaults is the one table of default settings.
var Defaults = Config{
	DataDir:       "data",
	Bind:          ":9443",
	TunnelAddr:    ":8000",
	MetricsAddr:   "127.0.0.1:9090", // loopback: /metrics needs no login
	FlushInterval: 10 * time.Second,
	ClientCA:      "", // no mTLS
	EdgeMemory:    256 << 20,
}

// withDefaults fills zero fields from Defaults and checks the result,
// reporting every problem at once.
func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		c.DataDir = Defaults.DataDir
	}
	if c.Bind == "" {
		c.Bind = Defaults.Bind
	}
	if c.TunnelAddr == "" {
		c.TunnelAddr = Defaults.TunnelAddr
	}
	if c.EdgeMemory == 0 {
		c.EdgeMemory = Defaults.EdgeMemory
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = Defaults.MetricsAddr
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = Defaults.FlushInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("bind %q: want host:port or :port", c.Bind))
	}
	if _, _, err := net.SplitHostPort(c.TunnelAddr); err != nil {
		errs = append(errs, fmt.Errorf("tunnel-addr %q: want host:port or :port", c.TunnelAddr))
	}
	if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil && c.MetricsAddr != MetricsOff {
		errs = append(errs, fmt.Errorf("metrics-addr %q: want host:port, or %s", c.MetricsAddr, MetricsOff))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("public-url %q: want https://host[:port]", c.PublicURL))
		}
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("flush interval %v: must be positive", c.FlushInterval))
	}
	if p := c.AdminPassword; p != "" && len(strings.TrimSpace(p)) < 8 {
		errs = append(errs, errors.New("admin password: at least 8 characters"))
	}
	if c.ClientCA != "" {
		pool, err := loadClientCAs(c.ClientCA)
		if err != nil {
			errs = append(errs, fmt.Errorf("client-ca %q: %w; want a PEM file of the CA certificates that issue device certificates", c.ClientCA, err))
		}
		c.clientCAs = pool
	}
	return c, errors.Join(errs...)
}

// publicURL is the server URL agents use: PublicURL if set, else the bound
// port on localhost.
func publicURL(c Config, bound net.Addr) string {
	if c.PublicURL != "" {
		return strings.TrimRight(c.PublicURL, "/")
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return "https://localhost:" + port
}

// MetricsOff as Config.MetricsAddr serves no /metrics.
const MetricsOff = "off"

// loopbackURL reports whether u names this machine only (localhost, a
// loopback address): a device elsewhere, or in a container here, cannot
// reach it.
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// loopbackWarning is what the server says when its public URL is loopback.
func loopbackWarning(u string) string {
	return fmt.Sprintf("the public URL %s is a loopback address: only agents on this machine, outside containers, can reach it, "+
		"and the docker run line fails in a container; start the server with --public-url https://ADDRESS:PORT that devices reach", u)
}

// publicTunnelAddr is the tunnel address agents use: the public URL's host
// with the tunnel port.
func publicTunnelAddr(c Config, serverURL string) string {
	u, _ := url.Parse(serverURL)
	_, port, _ := net.SplitHostPort(c.TunnelAddr)
	return net.JoinHostPort(u.Hostname(), port)
}
