package tunnel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn is a WebSocket as a net.Conn: Read reads binary messages back to
// back, so the byte stream survives any framing. SSH runs on it.
//
// Writes are queued and sent by a sender goroutine, which runs while there
// is something to send: SSH writes each packet in two pieces (what fits its
// 4 KiB buffer, then the rest), and a bulk transfer produces packets faster
// than one system call each can take. Whatever is written while a message is
// on the wire leaves in the next one. Write returns once its bytes are
// queued; a send error is returned by the Writes after it. The queue is
// bounded: Write waits for room.
type wsConn struct {
	ws   *websocket.Conn
	born time.Time

	// lastRead is when bytes last arrived, as nanoseconds since born (a
	// monotonic clock). Keepalives read it to tell a dead peer.
	lastRead atomic.Int64

	// r is the message being read. Only Read touches it: wsConn has one
	// reader, SSH's read loop (gorilla allows no more).
	r io.Reader

	mu      sync.Mutex // guards queue, spare, sending, err; never held across I/O
	room    sync.Cond  // on mu: the queue was taken, or err was set
	queue   *[]byte    // bytes waiting for the sender; nil when empty
	spare   *[]byte    // the buffer of the last message sent, for the next queue
	sending bool       // the sender goroutine runs
	err     error      // the first send error, or net.ErrClosed
}

// maxQueue bounds the bytes a wsConn queues, and so its messages.
const maxQueue = 256 << 10

// queues holds the write buffers of all connections: an idle connection
// keeps none.
var queues = sync.Pool{New: func() any {
	b := make([]byte, 0, maxQueue)
	return &b
}}

func newWSConn(ws *websocket.Conn) *wsConn {
	// No read limit: messages are streamed, never held whole, and SSH
	// bounds its own packets.
	c := &wsConn{ws: ws, born: time.Now()}
	c.room.L = &c.mu
	return c
}

// silent is how long no byte has arrived.
func (c *wsConn) silent() time.Duration {
	return time.Since(c.born) - time.Duration(c.lastRead.Load())
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: unexpected message type %d, want binary", typ)
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if n > 0 {
			c.lastRead.Store(int64(time.Since(c.born)))
		}
		if err == io.EOF {
			c.r = nil // end of this message, not of the stream
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for c.err == nil && c.queue != nil && len(*c.queue) >= maxQueue {
			c.room.Wait()
		}
		if c.err != nil {
			return n, c.err
		}
		if c.queue == nil {
			c.queue = queues.Get().(*[]byte)
		}
		k := min(len(p), maxQueue-len(*c.queue))
		*c.queue = append(*c.queue, p[:k]...)
		p, n = p[k:], n+k
		if !c.sending {
			c.sending = true
			go c.send()
		}
	}
	return n, nil
}

// send writes the queue out, one message at a time, until it is empty.
func (c *wsConn) send() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.queue != nil && c.err == nil {
		buf := c.queue
		c.queue, c.spare = c.spare, nil
		if c.queue != nil {
			*c.queue = (*c.queue)[:0]
		}
		c.room.Broadcast() // writers fill the next message while this one goes
		c.mu.Unlock()
		err := c.ws.WriteMessage(websocket.BinaryMessage, *buf)
		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
		}
		c.spare = buf
		if c.queue != nil && len(*c.queue) == 0 {
			queues.Put(c.queue)
			c.queue = nil
		}
		c.room.Broadcast()
	}
	c.sending = false
	if c.spare != nil {
		*c.spare = (*c.spare)[:0]
		queues.Put(c.spare)
		c.spare = nil
	}
}

// Close closes the TCP connection under the WebSocket (and under TLS, if
// any) without a closing handshake: SSH has already said what it had to,
// and a polite close could block on a peer that reads nothing. Bytes still
// queued are dropped, as SSH's own close does not wait for them either.
func (c *wsConn) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.room.Broadcast()
	c.mu.Unlock()
	nc := c.ws.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	return nc.Close()
}

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// errNoWriteDeadline: writes are sent by another goroutine; a dead peer is
// caught by keepalives, which close the connection.
var errNoWriteDeadline = errors.New("websocket conn: no write deadline")

func (c *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), errNoWriteDeadline)
}
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(time.Time) error  { return errNoWriteDeadline }
