package server

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/throttle"
)

// stalledBody opens a connection to hs, sends an edge request's headers
// declaring a body of declared bytes, sends sent of them and stalls. It
// returns the connection and a reader of the server's answer. A body past
// MaxUnprovedBody claims a body proof (checked only once it has arrived),
// as a device's large body does.
func stalledBody(t *testing.T, addr string, declared, sent int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	proof := ""
	if declared > protocol.MaxUnprovedBody {
		proof = protocol.BodyProofHeader + ": " + protocol.FormatBodyProof(1, make([]byte, protocol.MACSize)) + "\r\n"
	}
	fmt.Fprintf(c, "POST /edge/v1/sync HTTP/1.1\r\nHost: outpost\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n", protocol.ContentType, proof, declared)
	if _, err := c.Write(make([]byte, sent)); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// answerOf reads the status of the server's answer on a stalled connection,
// failing after wait.
func answerOf(t *testing.T, c net.Conn, br *bufio.Reader, wait time.Duration) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", wait, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A body that stops arriving is cut off at its deadline (a base and its
// declared length at a slow link's rate), and what it held is given back.
func TestSlowBodyIsCutOff(t *testing.T) {
	s, hs := testServer(t)
	s.bodyBase = 300 * time.Millisecond
	addr := strings.TrimPrefix(hs.URL, "http://")
	start := time.Now()
	c, br := stalledBody(t, addr, 4096, 100)
	if status := answerOf(t, c, br, 10*time.Second); status != http.StatusRequestTimeout {
		t.Fatalf("a stalled body: %d, want 408", status)
	}
	want := bodyDeadline(s.bodyBase, 4096, protocol.MaxCompressedBody)
	if took := time.Since(start); took < want {
		t.Errorf("cut off after %v, before its deadline of %v", took, want)
	}
	testAwait(t, func() bool { now, _ := s.inflight.Used(); return now == 0 }, "the stalled body's bytes were not given back")
	// The deadline of the largest body suits a satellite link.
	if d := bodyDeadline(bodyBaseTime, protocol.MaxCompressedBody, protocol.MaxCompressedBody); d < 8*time.Minute || d > 10*time.Minute {
		t.Errorf("4 MiB may take %v; at 64 kbit/s it needs about 9 minutes", d)
	}
}

// Bodies still arriving hold budget; once it is spent, new requests are told
// to slow down at once instead of piling up, and the budget comes back when
// the stalled connections go.
func TestInflightBudgetSlowsDownWhenSpent(t *testing.T) {
	s, hs := testServer(t)
	s.inflight = throttle.NewBudget(256<<10, func() { s.metrics.slowDowns.WithLabelValues("busy").Inc() })
	s.bodyBase = time.Minute
	dev := bound(t, s, hs.Config.Handler, "trusted")
	addr := strings.TrimPrefix(hs.URL, "http://")
	var held []net.Conn
	for range 2 {
		c, _ := stalledBody(t, addr, 200<<10, 100<<10)
		held = append(held, c)
	}
	testAwait(t, func() bool { now, _ := s.inflight.Used(); return now >= 200<<10 }, "the stalled bodies hold nothing")
	c, br := stalledBody(t, addr, 200<<10, 100<<10)
	if status := answerOf(t, c, br, 10*time.Second); status != http.StatusTooManyRequests {
		t.Fatalf("a body past the spent budget: %d, want 429", status)
	}
	if n := slowDowns(t, s, "busy"); n < 1 {
		t.Fatalf("busy slow-downs counted: %d", n)
	}
	for _, c := range held {
		_ = c.Close()
	}
	testAwait(t, func() bool { now, _ := s.inflight.Used(); return now == 0 }, "closed connections' bytes were not given back")
	if status, _, perr := dev.sync(dev.ping()); status != http.StatusOK {
		t.Fatalf("the trusted device after the stall: %d %+v", status, perr)
	}
}

// testAwait polls cond for up to 5 s.
func testAwait(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal(msg)
		}
	}
}
