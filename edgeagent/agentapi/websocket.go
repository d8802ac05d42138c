package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gorilla/websocket"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// Bounds of a websocket session.
const (
	// maxMessage bounds one message from the client (stdin).
	maxMessage = 1 << 20
	// exitWait bounds how long, after the output ended, the session waits
	// for the engine to report the process's exit before closing with
	// "detached".
	exitWait = 5 * time.Second
	// closeWait bounds how long the session waits for the client to answer
	// its close frame.
	closeWait = 5 * time.Second
	// exitPoll is how often the engine is asked for the exit code.
	exitPoll = 50 * time.Millisecond
)

// wsExec runs a command in a container and bridges it to a websocket.
// Query: id (container), cmd (repeated, one per argument, or one JSON array),
// tty (bool, default false), user, workdir.
func (a *API) wsExec(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" {
		return errorf(http.StatusBadRequest, "exec: id (the container) is required")
	}
	cmd, err := parseCmd(q["cmd"])
	if err != nil {
		return err
	}
	tty, err := parseBool("tty", q.Get("tty"))
	if err != nil {
		return err
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return errorf(http.StatusBadRequest, "exec: not a websocket upgrade request")
	}
	// Create before upgrading, so a missing or stopped container is an
	// HTTP status; start only once the websocket is up, so no process runs
	// without a peer.
	ex, err := a.cli.ExecCreate(r.Context(), id, client.ExecCreateOptions{
		Cmd: cmd, TTY: tty, User: q.Get("user"), WorkingDir: q.Get("workdir"),
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return engineError("exec "+id, err)
	}
	exit := func(ctx context.Context) (string, bool) {
		res, err := a.cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil || res.Running {
			return "", false
		}
		return fmt.Sprintf("exit %d", res.ExitCode), true
	}
	a.session(w, r, tty, exit, func(ctx context.Context) (client.HijackedResponse, error) {
		res, err := a.cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{TTY: tty})
		return res.HijackedResponse, err
	})
	return nil
}

// wsAttach attaches a websocket to a running container's stdio. Query: id,
// logs (bool: replay the output so far first).
func (a *API) wsAttach(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" {
		return errorf(http.StatusBadRequest, "attach: id (the container) is required")
	}
	logs, err := parseBool("logs", q.Get("logs"))
	if err != nil {
		return err
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return errorf(http.StatusBadRequest, "attach: not a websocket upgrade request")
	}
	ins, err := a.cli.ContainerInspect(r.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		return engineError("attach "+id, err)
	}
	c := ins.Container
	if c.State == nil || !c.State.Running {
		return errorf(http.StatusConflict, "attach: container %s is not running: start it first", id)
	}
	tty := c.Config != nil && c.Config.Tty
	exit := func(ctx context.Context) (string, bool) {
		res, err := a.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil || res.Container.State == nil || res.Container.State.Running {
			return "", false
		}
		return fmt.Sprintf("exit %d", res.Container.State.ExitCode), true
	}
	a.session(w, r, tty, exit, func(ctx context.Context) (client.HijackedResponse, error) {
		res, err := a.cli.ContainerAttach(ctx, c.ID, client.ContainerAttachOptions{
			Stream: true, Stdin: true, Stdout: true, Stderr: true, Logs: logs,
		})
		return res.HijackedResponse, err
	})
	return nil
}

// session upgrades to a websocket, opens the engine stream and bridges the
// two until the output ends, then closes the websocket with the reason exit
// reports ("exit N"), or "detached" when the process outlives the stream.
//
// Client messages, binary or text, are written to stdin. The client's close
// frame half-closes stdin and does not end the session: output goes on until
// the process closes it, and the session's own close frame answers the
// client's. Output goes out as binary messages; without a tty, stdout and
// stderr are demultiplexed and sent as they come, undistinguished.
func (a *API) session(w http.ResponseWriter, r *http.Request, tty bool,
	exit func(context.Context) (string, bool),
	open func(context.Context) (client.HijackedResponse, error)) {
	if !a.startSession() {
		writeError(w, http.StatusServiceUnavailable, "agent API closed")
		return
	}
	defer a.sessions.Done()
	hdr := http.Header{
		HeaderAgentVersion: {a.cfg.Version},
		HeaderAPIVersion:   {APIVersion},
	}
	// Upgrade answers a failed handshake itself.
	ws, err := a.upgrader.Upgrade(w, r, hdr)
	if err != nil {
		return
	}
	defer func() { _ = ws.Close() }() // for the early returns
	// Close cancels ctx; a lost client does not (the server stops watching
	// a hijacked connection), copyStdin notices that.
	ctx := r.Context()

	stream, err := open(ctx)
	if err != nil {
		a.log.Warn("websocket session: open stream", "path", r.URL.Path, "err", err)
		closeWS(ws, websocket.CloseInternalServerErr, "engine: "+err.Error())
		return
	}
	defer stream.Close()
	stop := context.AfterFunc(ctx, func() {
		closeWS(ws, websocket.CloseGoingAway, "agent API closed")
		_ = ws.Close()
		stream.Close()
	})
	defer stop()

	ws.SetReadLimit(maxMessage)
	// The default handler answers a close frame at once; here the answer
	// waits for the exit code.
	ws.SetCloseHandler(func(int, string) error { return nil })
	var clientClosed bool // true: close frame; false: connection lost
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		clientClosed = copyStdin(ws, stream)
	}()
	// Closing the websocket ends copyStdin's read.
	defer func() {
		_ = ws.Close()
		<-stdinDone
	}()

	out := binaryWriter{ws}
	if tty {
		_, err = io.Copy(out, stream.Reader)
	} else {
		_, err = stdcopy.StdCopy(out, out, stream.Reader)
	}
	if err != nil && ctx.Err() == nil {
		a.log.Debug("websocket session: output", "path", r.URL.Path, "err", err)
	}

	select {
	case <-stdinDone:
		if !clientClosed {
			return // the client is gone; copyStdin closed the stream
		}
	default:
	}
	closeWS(ws, websocket.CloseNormalClosure, waitExit(ctx, exit))
	select {
	case <-stdinDone:
	case <-time.After(closeWait):
	case <-ctx.Done():
	}
}

// copyStdin writes the client's messages to the stream until the client's
// close frame, which it passes on as a half-close, or a read error, which
// closes the stream. It reports whether the client closed properly.
func copyStdin(ws *websocket.Conn, stream client.HijackedResponse) bool {
	stdin := true // false once the process stopped taking input
	for {
		_, msg, err := ws.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if stdin {
					_ = stream.CloseWrite()
				}
				return true
			}
			stream.Close()
			return false
		}
		if stdin {
			if _, err := io.Copy(stream.Conn, msg); err != nil {
				stdin = false
			}
		}
	}
}

// waitExit polls exit until it knows, for at most exitWait: the engine may
// report the exit a moment after the stream ends.
func waitExit(ctx context.Context, exit func(context.Context) (string, bool)) string {
	ctx, cancel := context.WithTimeout(ctx, exitWait)
	defer cancel()
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	for {
		if reason, ok := exit(ctx); ok {
			return reason
		}
		select {
		case <-ctx.Done():
			return "detached"
		case <-tick.C:
		}
	}
}

// closeWS sends a close frame. Its reason must be UTF-8 of at most 123
// bytes, or the client fails the connection instead of reading it.
func closeWS(ws *websocket.Conn, code int, reason string) {
	if len(reason) > 123 {
		reason = strings.ToValidUTF8(reason[:120], "") + "..."
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
}

// binaryWriter sends each write as one binary message. One goroutine writes
// at a time (gorilla allows one writer).
type binaryWriter struct{ ws *websocket.Conn }

func (b binaryWriter) Write(p []byte) (int, error) {
	if err := b.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// parseCmd reads the cmd parameters: one per argument, or a single JSON
// array.
func parseCmd(vals []string) ([]string, error) {
	if len(vals) == 0 {
		return nil, errorf(http.StatusBadRequest, `exec: cmd is required (repeat cmd= per argument, or give a JSON array: cmd=["sh","-c","..."])`)
	}
	if len(vals) == 1 && strings.HasPrefix(strings.TrimSpace(vals[0]), "[") {
		var cmd []string
		if err := json.Unmarshal([]byte(vals[0]), &cmd); err != nil {
			return nil, errorf(http.StatusBadRequest, "exec: cmd %q is not a JSON array of strings: %v", vals[0], err)
		}
		if len(cmd) == 0 {
			return nil, errorf(http.StatusBadRequest, "exec: cmd is an empty array")
		}
		return cmd, nil
	}
	return vals, nil
}

// parseBool reads a boolean parameter; empty is false.
func parseBool(param, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "%s %q is not a boolean (use 1 or 0)", param, v)
	}
	return b, nil
}

// engineError maps an engine error to a status, keeping the engine's words.
func engineError(op string, err error) error {
	status := http.StatusBadGateway
	switch {
	case cerrdefs.IsNotFound(err):
		status = http.StatusNotFound
	case cerrdefs.IsConflict(err), cerrdefs.IsFailedPrecondition(err):
		status = http.StatusConflict
	case cerrdefs.IsInvalidArgument(err):
		status = http.StatusBadRequest
	}
	return &statusError{status: status, msg: op, err: err}
}
