package tunnel

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// channelType is the SSH channel type the server opens to reach the agent
// API. A name with "@" is ours to define (RFC 4250 §4.6.1).
const channelType = "api@outpost"

// chunkSize is how much a stream reads from its channel at once: one SSH
// packet's worth.
const chunkSize = 32 << 10

// stream is one SSH channel as a net.Conn, on either side.
//
// An ssh.Channel read cannot be interrupted, yet net/http relies on read
// deadlines (http.Server aborts its background read with a deadline in the
// past). So once a read deadline has been set, a pump goroutine reads the
// channel into buf and hands chunks to Read, which waits on the chunk, the
// deadline or Close, whichever comes first. Until then Read reads the
// channel directly, saving a copy and a goroutine hand-off: the server's
// http.Transport never sets a deadline, the agent's http.Server sets one
// before its first read. A first deadline set while a direct Read is blocked
// can only free it by closing the channel, when it passes.
//
// A write cannot be interrupted either: when the write deadline passes
// during a Write, the channel is closed, which is the only way to free it.
type stream struct {
	ch            ssh.Channel
	local, remote net.Addr
	touch         func() // marks activity (agent side); may be nil

	data chan []byte   // pump -> Read: the next chunk; closed at the end of input
	more chan struct{} // Read -> pump: the chunk is consumed (capacity 1)
	done chan struct{} // closed by Close
	once sync.Once

	// mu guards pumped, started, direct, rest, rerr and rtimedOut. It is
	// never held while waiting for data or on the network.
	mu        sync.Mutex
	pumped    bool   // a read deadline was set: Reads go through the pump
	started   bool   // the pump runs (or has run)
	direct    int    // direct Reads in progress
	rest      []byte // unread part of the current chunk
	rerr      error  // why input ended, set before data is closed
	rtimedOut bool   // a read deadline closed the channel under a direct Read

	rd, wd    deadline
	writing   atomic.Int32 // Writes in progress
	wtimedOut atomic.Bool  // the write deadline closed the channel
}

func newStream(ch ssh.Channel, local, remote net.Addr, touch func()) *stream {
	s := &stream{
		ch: ch, local: local, remote: remote, touch: touch,
		data: make(chan []byte),
		more: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	s.rd = newDeadline(s.readExpired)
	s.wd = newDeadline(s.writeExpired)
	return s
}

// pumpLocked switches Reads to the pump, starting it unless a direct Read
// is in progress (the last one starts it). s.mu must be held.
func (s *stream) pumpLocked() {
	s.pumped = true
	if !s.started && s.direct == 0 {
		s.started = true
		go s.pump()
	}
}

func (s *stream) pump() {
	buf := make([]byte, chunkSize)
	for {
		n, err := s.ch.Read(buf)
		if n > 0 {
			select {
			case s.data <- buf[:n]:
			case <-s.done:
				return
			}
			select {
			case <-s.more:
			case <-s.done:
				return
			}
		}
		if err != nil {
			s.mu.Lock()
			s.rerr = err
			s.mu.Unlock()
			close(s.data)
			return
		}
	}
}

// take copies from rest into p and gives the buffer back to the pump when
// rest is used up. s.mu must be held.
func (s *stream) take(p []byte) int {
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	if len(s.rest) == 0 {
		s.rest = nil
		s.more <- struct{}{} // never blocks: one chunk out at a time
	}
	return n
}

func (s *stream) Read(p []byte) (int, error) {
	if isClosed(s.done) {
		return 0, net.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	if !s.pumped {
		s.direct++
		s.mu.Unlock()
		return s.readDirect(p)
	}
	if len(s.rest) > 0 {
		n := s.take(p)
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	expired := s.rd.wait()
	if isClosed(expired) {
		return 0, os.ErrDeadlineExceeded
	}
	select {
	case chunk, ok := <-s.data:
		s.mu.Lock()
		defer s.mu.Unlock()
		if !ok {
			return 0, s.rerr
		}
		s.rest = chunk
		if s.touch != nil {
			s.touch()
		}
		return s.take(p), nil
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	case <-s.done:
		return 0, net.ErrClosed
	}
}

// readDirect reads the channel itself; s.direct counts it.
func (s *stream) readDirect(p []byte) (int, error) {
	n, err := s.ch.Read(p)
	if n > 0 && s.touch != nil {
		s.touch()
	}
	s.mu.Lock()
	s.direct--
	if s.pumped && s.direct == 0 {
		s.pumpLocked()
	}
	if err != nil && s.rtimedOut {
		err = os.ErrDeadlineExceeded
	}
	s.mu.Unlock()
	return n, err
}

// readExpired runs when the read deadline passes: a direct Read in
// progress can only be freed by closing the channel.
func (s *stream) readExpired() {
	s.mu.Lock()
	stuck := s.direct > 0
	if stuck {
		s.rtimedOut = true
	}
	s.mu.Unlock()
	if stuck {
		_ = s.ch.Close()
	}
}

func (s *stream) Write(p []byte) (int, error) {
	if isClosed(s.done) {
		return 0, net.ErrClosed
	}
	// Count this write before looking at the deadline, and the deadline's
	// timer closes before it counts writers: one of the two sees the other.
	s.writing.Add(1)
	defer s.writing.Add(-1)
	if isClosed(s.wd.wait()) {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := s.ch.Write(p)
	if n > 0 && s.touch != nil {
		s.touch()
	}
	if err != nil && s.wtimedOut.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// writeExpired runs when the write deadline passes: a Write in progress can
// only be freed by closing the channel.
func (s *stream) writeExpired() {
	if s.writing.Load() > 0 {
		s.wtimedOut.Store(true)
		_ = s.ch.Close()
	}
}

// CloseWrite sends EOF: the peer reads to the end while this side can still
// read what the peer writes (an exec's stdin closed, its output to come).
func (s *stream) CloseWrite() error { return s.ch.CloseWrite() }

func (s *stream) Close() error {
	err := net.ErrClosed
	s.once.Do(func() {
		close(s.done)
		s.rd.set(time.Time{})
		s.wd.set(time.Time{})
		err = s.ch.Close()
	})
	return err
}

func (s *stream) LocalAddr() net.Addr  { return s.local }
func (s *stream) RemoteAddr() net.Addr { return s.remote }

func (s *stream) SetDeadline(t time.Time) error {
	_ = s.SetReadDeadline(t)
	s.wd.set(t)
	return nil
}

func (s *stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	if !s.pumped {
		s.pumpLocked()
	}
	s.mu.Unlock()
	s.rd.set(t)
	return nil
}

func (s *stream) SetWriteDeadline(t time.Time) error { s.wd.set(t); return nil }

// deadline is a point in time as a channel closed when it passes, after
// net.Pipe's. expired, if set, runs (in its own goroutine) each time the
// deadline passes.
type deadline struct {
	expired func()

	mu     sync.Mutex // guards timer and cancel; never held across I/O
	timer  *time.Timer
	cancel chan struct{}
}

func newDeadline(expired func()) deadline {
	return deadline{expired: expired, cancel: make(chan struct{})}
}

// set moves the deadline to t; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it has closed cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() {
			close(cancel)
			if d.expired != nil {
				d.expired()
			}
		})
		return
	}
	if !closed {
		close(d.cancel)
		if d.expired != nil {
			go d.expired()
		}
	}
}

// wait returns a channel closed when the deadline passes.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// listener hands the agent's accepted channels to an http.Server, one at a
// time: Accept takes each stream from an unbuffered channel, so a stream is
// either served or, after Close, closed by its sender.
type listener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newListener(addr net.Addr) *listener {
	return &listener{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// offer gives c to Accept, or reports false when the listener is closed.
func (l *listener) offer(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }
