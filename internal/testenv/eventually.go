package testenv

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 100 * time.Millisecond

// Eventually calls cond until it reports true, at most until timeout has
// passed, checking every 100ms; cond's message says what it saw. On timeout
// the test fails with the last message. It is the tests' only way to wait:
// no bare time.Sleep.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", timeout, msg)
			return
		}
		<-tick.C
	}
}
