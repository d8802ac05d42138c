package tunnel

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults, in one place. A zero field in ServerConfig, ClientConfig or
// Backoff takes the value here.
const (
	defaultKeepAlive  = 20 * time.Second
	defaultInactivity = 5 * time.Minute
	defaultBackoffMin = time.Second
	defaultBackoffMax = 2 * time.Minute

	// idleWait bounds how long the agent waits for the server to answer its
	// idle announcement (the server takes its last snapshot meanwhile).
	idleWait = 30 * time.Second

	// handshakeTimeout bounds the WebSocket and SSH handshakes, for a link
	// of a few hundred milliseconds each way with room to spare.
	handshakeTimeout = 30 * time.Second

	// wsBufferSize is the WebSocket write buffer: an SSH packet (32 KiB of
	// data plus headers) fits in one frame. The server takes it from a pool
	// for each write, so an idle tunnel holds none.
	wsBufferSize = 64 << 10

	// apiIdleTimeout closes HTTP connections to the agent API left idle
	// (each holds an SSH channel) on both sides.
	apiIdleTimeout = 90 * time.Second
)

// orDefault returns d when v is zero.
func orDefault(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func (cfg *ServerConfig) check() error {
	var errs []string
	if cfg.HostKey == nil {
		errs = append(errs, "HostKey is nil")
	}
	if cfg.Authorize == nil {
		errs = append(errs, "Authorize is nil")
	}
	if cfg.KeepAlive < 0 {
		errs = append(errs, fmt.Sprintf("KeepAlive is %v, want > 0 (0 = %v)", cfg.KeepAlive, defaultKeepAlive))
	}
	return joinConfig("tunnel server config", errs)
}

func (cfg *ServerConfig) withDefaults() ServerConfig {
	c := *cfg
	c.KeepAlive = orDefault(c.KeepAlive, defaultKeepAlive)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

func (cfg *ClientConfig) check() error {
	var errs []string
	if u, err := url.Parse(cfg.URL); err != nil {
		errs = append(errs, fmt.Sprintf("URL %q: %v", cfg.URL, err))
	} else if u.Scheme != "wss" && u.Scheme != "ws" {
		errs = append(errs, fmt.Sprintf("URL %q: scheme is %q, want wss", cfg.URL, u.Scheme))
	}
	if cfg.User == "" {
		errs = append(errs, "User (the environment ID) is empty")
	}
	if cfg.Signer == nil {
		errs = append(errs, "Signer (the agent's identity key) is nil")
	}
	if !strings.HasPrefix(cfg.HostKeyFingerprint, "SHA256:") {
		errs = append(errs, fmt.Sprintf("HostKeyFingerprint %q: want the SHA256:... form", cfg.HostKeyFingerprint))
	}
	if cfg.Handler == nil {
		errs = append(errs, "Handler is nil")
	}
	if cfg.KeepAlive < 0 {
		errs = append(errs, fmt.Sprintf("KeepAlive is %v, want > 0 (0 = %v)", cfg.KeepAlive, defaultKeepAlive))
	}
	return joinConfig("tunnel client config", errs)
}

func (cfg *ClientConfig) withDefaults() ClientConfig {
	c := *cfg
	c.KeepAlive = orDefault(c.KeepAlive, defaultKeepAlive)
	c.Inactivity = orDefault(c.Inactivity, defaultInactivity)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// joinConfig reports every problem at once, one per line.
func joinConfig(what string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", what, strings.Join(problems, "; "))
}
