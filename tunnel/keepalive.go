package tunnel

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// keepAliveRequest is the global request both sides send every keepalive
// period, wanting a reply.
const keepAliveRequest = "keepalive@outpost"

// keepAlive watches one connection. Every period it sends a keepalive
// request (at most one outstanding), and it calls dead when no byte at all
// has arrived for two periods: answers to its requests, the peer's own
// keepalives or any traffic prove the peer alive, so a busy slow link whose
// replies queue behind data is not taken for dead.
//
// It runs on a timer, not a goroutine: an idle tunnel costs no stack for it.
// The timer fires every period, or sooner, exactly when two periods of
// silence would be up.
type keepAlive struct {
	period time.Duration
	conn   ssh.Conn
	ws     *wsConn
	dead   func()

	mu      sync.Mutex // guards timer and stopped; never held across I/O
	timer   *time.Timer
	stopped bool

	sending atomic.Bool // a request is waiting for its reply
}

func startKeepAlive(period time.Duration, conn ssh.Conn, ws *wsConn, dead func()) *keepAlive {
	k := &keepAlive{period: period, conn: conn, ws: ws, dead: dead}
	k.mu.Lock()
	k.timer = time.AfterFunc(period, k.tick)
	k.mu.Unlock()
	return k
}

func (k *keepAlive) tick() {
	silent := k.ws.silent()
	if silent >= 2*k.period {
		k.dead()
		return
	}
	next := k.period
	if d := 2*k.period - silent; d < next {
		next = d
	}
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.timer.Reset(next)
	k.mu.Unlock()
	if k.sending.CompareAndSwap(false, true) {
		// Blocks this timer goroutine until the reply, or until the
		// connection closes; the next tick skips sending meanwhile.
		_, _, _ = k.conn.SendRequest(keepAliveRequest, true, nil)
		k.sending.Store(false)
	}
}

func (k *keepAlive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.timer.Stop()
}
