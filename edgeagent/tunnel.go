package edgeagent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/tunnel"
)

// tunnelKeeper keeps a standard agent's tunnel up once the server asked for
// it: it dials, redials with full-jitter backoff when the link or the server
// drops (a restarted server finds the agent back on its own), and stops
// when the tunnel closed for inactivity, until the server asks again.
type tunnelKeeper struct {
	ctx     context.Context
	log     *slog.Logger
	url     string
	fp      string
	signer  ssh.Signer
	tls     *tls.Config
	handler http.Handler
	idle    time.Duration

	mu   sync.Mutex // guards up
	up   bool
	done sync.WaitGroup
}

func newTunnelKeeper(ctx context.Context, cfg Config, key ed25519.PrivateKey, handler http.Handler) (*tunnelKeeper, error) {
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		// The tunnel's SSH host key, pinned by the edge key, authenticates
		// the server; TLS only hides the stream.
		InsecureSkipVerify: cfg.InsecurePoll, //nolint:gosec // see above
		MinVersion:         tls.VersionTLS12,
	}
	return &tunnelKeeper{
		ctx: ctx, log: cfg.Logger, url: "wss://" + cfg.Key.TunnelAddr + "/tunnel", fp: cfg.Key.TunnelFingerprint,
		signer: signer, tls: tc, handler: handler, idle: cfg.Inactivity,
	}, nil
}

// open starts the tunnel for env unless it is up already.
func (k *tunnelKeeper) open(env uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.up || k.ctx.Err() != nil {
		return
	}
	k.up = true
	k.done.Add(1)
	go func() {
		defer k.done.Done()
		k.log.Info("opening the tunnel the server asked for", "url", k.url)
		err := tunnel.Run(k.ctx, tunnel.ClientConfig{
			URL: k.url, User: strconv.FormatUint(env, 10), Signer: k.signer, HostKeyFingerprint: k.fp,
			TLS: k.tls, Handler: k.handler, Inactivity: k.idle, Log: k.log,
		}, tunnel.Backoff{Rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))})
		switch {
		case errors.Is(err, tunnel.ErrInactive):
			k.log.Info("tunnel closed for inactivity", "after", k.idle)
		case errors.Is(err, tunnel.ErrHostKey):
			k.log.Error("tunnel refused: the server's host key is not the one the edge key pins; not retrying", "err", err)
		case k.ctx.Err() != nil:
		default:
			k.log.Warn("tunnel ended", "err", err)
		}
		k.mu.Lock()
		k.up = false
		k.mu.Unlock()
	}()
}

// wait waits for the tunnel goroutine after ctx ended.
func (k *tunnelKeeper) wait() { k.done.Wait() }
