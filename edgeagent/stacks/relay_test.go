package stacks

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestRelay: the helper's JSON log lines come out of the agent's logger at
// their level with their attributes; anything else as a warning.
func TestRelay(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	relay(log, strings.NewReader(`{"time":"2026-01-01T00:00:00Z","level":"WARN","msg":"compose","resource":"web","status":"Error"}
{"time":"2026-01-01T00:00:00Z","level":"DEBUG","msg":"compose start","op":"up"}
panic: boom

{"level":"INFO","msg":"deploy: the engine changed during up, trying again","attempt":1}
`))
	want := `level=WARN msg=compose resource=web status=Error
level=WARN msg="compose helper" stderr="panic: boom"
level=INFO msg="deploy: the engine changed during up, trying again" attempt=1
`
	if out.String() != want {
		t.Errorf("relayed:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestRelayKeepsLinesAfterALongOne: a log line over maxLogLine is logged
// cut, and the lines after it (the helper's final error) as usual.
func TestRelayKeepsLinesAfterALongOne(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	long := `{"level":"WARN","msg":"compose","details":"` + strings.Repeat("x", maxLogLine) + `"}`
	in := long + "\n" + `{"level":"ERROR","msg":"write the result","err":"the reason the deploy failed"}` + "\n"
	relay(log, strings.NewReader(in))
	got := out.String()
	if !strings.Contains(got, "the reason the deploy failed") {
		t.Errorf("after a %d-byte line the relay dropped the rest of the helper's log; relayed %d bytes: %.200q", len(long), len(got), got)
	}
	if !strings.Contains(got, "log line cut") {
		t.Errorf("the long line was not logged as cut: %.200q", got)
	}
}

// TestResultErr: an error keeps its message and the sentinel it wraps
// through the helper's answer.
func TestResultErr(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind error
	}{
		{fmt.Errorf("%w: compose file: bad", ErrInvalid), ErrInvalid},
		{errors.Join(errors.New("x"), ErrImage), ErrImage},
		{errors.New("up: conflict"), nil},
	} {
		got := ResultOf(tc.err).Err()
		if got.Error() != tc.err.Error() || errors.Unwrap(got) != tc.kind {
			t.Errorf("%v: came back as %q wrapping %v", tc.err, got, errors.Unwrap(got))
		}
	}
	if err := ResultOf(nil).Err(); err != nil {
		t.Errorf("no error came back as %v", err)
	}
}
