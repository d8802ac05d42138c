package tunnel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"outpost/internal/testenv"
)

// checkLeaks fails the test when goroutines are left over after
// everything the test registered later has been cleaned up. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			n := runtime.NumGoroutine()
			buf := make([]byte, 1<<20)
			return n <= before, fmt.Sprintf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		})
	})
}

// wsPair returns the two ends of a WebSocket over loopback TCP, each as a
// wsConn: server side first.
func wsPair(t *testing.T) (*wsConn, *wsConn) {
	t.Helper()
	got := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{WriteBufferSize: wsBufferSize}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
		}
		got <- ws
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{WriteBufferSize: wsBufferSize}
	cws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newWSConn(<-got), newWSConn(cws)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// The byte stream survives message boundaries: writes of any size, read
// back with a small buffer, arrive whole and in order, both ways.
func TestWSConnStream(t *testing.T) {
	checkLeaks(t)
	a, b := wsPair(t)
	for _, dir := range []struct {
		name string
		w, r *wsConn
	}{{"server to agent", a, b}, {"agent to server", b, a}} {
		t.Run(dir.name, func(t *testing.T) {
			var want bytes.Buffer
			for _, n := range []int{1, 0, 7, 4096, 32 << 10, maxQueue, maxQueue + 3, 1 << 20, 5} {
				p := make([]byte, n)
				_, _ = rand.Read(p)
				want.Write(p)
			}
			errc := make(chan error, 1)
			go func() {
				data := want.Bytes()
				for _, n := range []int{1, 0, 7, 4096, 32 << 10, maxQueue, maxQueue + 3, 1 << 20, 5} {
					if _, err := dir.w.Write(data[:n]); err != nil {
						errc <- err
						return
					}
					data = data[n:]
				}
				errc <- nil
			}()
			got := make([]byte, want.Len())
			for off := 0; off < len(got); {
				n, err := dir.r.Read(got[off:min(off+1000, len(got))])
				if err != nil {
					t.Fatalf("read at %d: %v", off, err)
				}
				off += n
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatal("bytes differ")
			}
		})
	}
}

// Close frees a Write waiting for room in the queue, and the sender ends.
func TestWSConnCloseFreesWrite(t *testing.T) {
	checkLeaks(t)
	a, _ := wsPair(t) // the other end never reads
	errc := make(chan error, 1)
	go func() {
		p := make([]byte, 1<<20)
		for {
			if _, err := a.Write(p); err != nil {
				errc <- err
				return
			}
		}
	}()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		full := a.queue != nil && len(*a.queue) >= maxQueue
		return full, "the queue has room: the peer's buffers are not full yet"
	})
	_ = a.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// channelPair returns the two ends of an SSH channel over loopback TCP
// (net.Pipe cannot carry SSH: both ends write their version first).
func channelPair(t *testing.T) (ssh.Channel, ssh.Channel) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	type accepted struct {
		ch  ssh.Channel
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(c1, cfg)
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		t.Cleanup(func() { _ = sc.Close() })
		go ssh.DiscardRequests(reqs)
		nc := <-chans
		go func() {
			for nc := range chans {
				_ = nc.Reject(ssh.Prohibited, "one only")
			}
		}()
		ch, creqs, err := nc.Accept()
		go ssh.DiscardRequests(creqs)
		acc <- accepted{ch, err}
	}()
	cc, chans, reqs, err := ssh.NewClientConn(c2, "pipe", &ssh.ClientConfig{
		User: "test", HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a loopback test
	})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	t.Cleanup(func() { _ = client.Close() })
	ch, creqs, err := client.OpenChannel(channelType, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	a := <-acc
	if a.err != nil {
		t.Fatal(a.err)
	}
	return ch, a.ch
}

// A read deadline frees a Read, in the past as well as in the future, and
// the stream reads on once it is cleared: http.Server depends on it.
func TestStreamReadDeadline(t *testing.T) {
	checkLeaks(t)
	ch, peer := channelPair(t)
	s := newStream(ch, nil, nil, nil)
	defer func() { _ = s.Close() }()
	buf := make([]byte, 10)

	_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past a deadline = %v", err)
	}

	// A deadline set in the past from elsewhere frees a waiting Read.
	_ = s.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(buf)
		errc <- err
	}()
	_ = s.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read aborted by a past deadline = %v", err)
	}
	var ne net.Error
	if _, err := s.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline error %v is no net.Error timeout", err)
	}

	_ = s.SetReadDeadline(time.Time{})
	if _, err := peer.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("Read after the deadline cleared = %q, %v", buf[:n], err)
	}
}

// A stream that never had a deadline reads the channel directly; a first
// deadline set while such a Read waits frees it, by closing the channel.
func TestStreamDirectReadDeadline(t *testing.T) {
	checkLeaks(t)
	ch, _ := channelPair(t)
	s := newStream(ch, nil, nil, nil)
	defer func() { _ = s.Close() }()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		errc <- err
	}()
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.direct == 1, "no direct Read yet"
	})
	_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("direct Read past a deadline = %v", err)
	}
}

// A Write the peer does not drain (more than the SSH window) is freed by
// its deadline.
func TestStreamWriteDeadline(t *testing.T) {
	checkLeaks(t)
	ch, _ := channelPair(t) // the peer reads nothing
	s := newStream(ch, nil, nil, nil)
	defer func() { _ = s.Close() }()
	_ = s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := s.Write(make([]byte, 4<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past a deadline = %v", err)
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Fatal("the stream still writes after a write timeout closed it")
	}
}

// CloseWrite ends what the peer reads while both keep the other direction.
func TestStreamCloseWrite(t *testing.T) {
	checkLeaks(t)
	ch, peer := channelPair(t)
	s := newStream(ch, nil, nil, nil)
	defer func() { _ = s.Close() }()
	if _, err := s.Write([]byte("stdin")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "stdin" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := peer.Write([]byte("stdout")); err != nil {
		t.Fatal(err)
	}
	_ = peer.CloseWrite()
	got, err = io.ReadAll(s)
	if err != nil || string(got) != "stdout" {
		t.Fatalf("read after CloseWrite: %q, %v", got, err)
	}
}
