package stacks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// HelperName is the compose helper's executable (cmd/outpost-compose),
// shipped beside outpost-agent.
//
// Why a second executable: Go runs the package initialization of everything
// linked into a binary when it starts, used or not. Compose, the Docker CLI
// and what they bring (OpenTelemetry, gRPC, BuildKit's and containerd's
// protobuf registries, the compose schema) cost an idle agent about 18 MiB
// of resident memory that way (40 MiB with them, 21 without, measured by
// internal/tools/benchagent), before any stack is deployed, and their
// allocations during a deploy stayed with the agent afterwards. The same
// binary run as a child would not help: the long-lived process would still
// initialize them all.
const HelperName = "outpost-compose"

// Operations of the compose helper.
const (
	OpUp   = "up"   // Request.Spec: Deploy's work
	OpDown = "down" // Request.Project: one Compose down
)

// Request is what the agent asks of the compose helper, as JSON on its
// standard input.
type Request struct {
	Op      string `json:"op"`
	Spec    *Spec  `json:"spec,omitempty"`
	Project string `json:"project,omitempty"`
}

// Result is the helper's answer, as JSON on its standard output. The
// helper logs on its standard error, as JSON lines (log/slog), which the
// agent logs as its own.
type Result struct {
	// Error is the operation's error, "" when it succeeded; Kind says
	// what it wraps: KindInvalid (ErrInvalid) or KindImage (ErrImage).
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// UpFailed: the error came from Compose's up, so the engine may still
	// be creating containers for it.
	UpFailed bool `json:"upFailed,omitempty"`
	// Services are the project's services after a successful up.
	Services []string `json:"services,omitempty"`
}

// Kinds of Result errors.
const (
	KindInvalid = "invalid"
	KindImage   = "image"
)

// ResultOf is the Result of an operation that ended with err.
func ResultOf(err error) Result {
	if err == nil {
		return Result{}
	}
	r := Result{Error: err.Error()}
	switch {
	case errors.Is(err, ErrInvalid):
		r.Kind = KindInvalid
	case errors.Is(err, ErrImage):
		r.Kind = KindImage
	}
	return r
}

// Err is the error r reports, nil if none: its message, wrapping the
// sentinel Kind names.
func (r Result) Err() error {
	if r.Error == "" {
		return nil
	}
	e := &helperError{msg: r.Error}
	switch r.Kind {
	case KindInvalid:
		e.kind = ErrInvalid
	case KindImage:
		e.kind = ErrImage
	}
	return e
}

// helperError is an error the helper reported: its message, and the
// sentinel it wrapped there.
type helperError struct {
	msg  string
	kind error
}

func (e *helperError) Error() string { return e.msg }
func (e *helperError) Unwrap() error { return e.kind }

// helper starts the compose helper.
type helper struct {
	path string   // "" until found
	env  []string // added to the environment
	log  *slog.Logger

	mu sync.Mutex // guards path while it is looked up
}

// helperStop is how long the helper has to end after SIGTERM (a cancelled
// Deploy) before it is killed.
const helperStop = 15 * time.Second

// helperDrain bounds the reading of the helper's output after it exited
// and its process group was killed.
const helperDrain = 2 * time.Second

// maxResult bounds the helper's answer on its standard output.
const maxResult = 16 << 20

// find returns the helper's path, looking it up the first time.
func (h *helper) find() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.path != "" {
		return h.path, nil
	}
	var beside string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			beside = filepath.Join(filepath.Dir(exe), HelperName)
			if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
				h.path = beside
				h.logFound()
				return h.path, nil
			}
		}
	}
	p, err := exec.LookPath(HelperName)
	if err != nil {
		return "", fmt.Errorf("%w: %s is not beside the agent (%s) nor on PATH: install it with the agent (the agent's image has it)", ErrNoHelper, HelperName, beside)
	}
	h.path = p
	h.logFound()
	return p, nil
}

// logFound says which helper the agent runs: the one beside it, or, when
// there is none, the first on PATH.
func (h *helper) logFound() {
	if h.log != nil {
		h.log.Info("compose helper", "path", h.path)
	}
}

// run runs one request in a new helper process and returns its Result. An
// error the helper reports comes back with its message and its sentinel;
// Result is nil when the helper gave none (it could not start, or was
// killed).
func (h *helper) run(ctx context.Context, req Request, project string) (*Result, error) {
	path, err := h.find()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path)
	// The agent's environment (the docker CLI's variables, proxies, HOME),
	// but not the edge key: a secret the helper has no use for.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "EDGE_KEY=") })
	cmd.Env = append(env, h.env...)
	cmd.Stdin = bytes.NewReader(in)
	// Stdout and stderr are pipes of our own, handed to the helper as
	// files: Wait returns when the helper exits, not when everything that
	// inherited them (a plugin, a shell wrapper's child) lets go.
	var out bytes.Buffer
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("compose helper: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_, _ = outR.Close(), outW.Close()
		return nil, fmt.Errorf("compose helper: %w", err)
	}
	defer func() { _, _ = outR.Close(), errR.Close() }()
	cmd.Stdout, cmd.Stderr = outW, errW
	// A cancelled operation gets the chance to stop Compose cleanly:
	// SIGTERM, then SIGKILL after WaitDelay. The helper runs in a process
	// group of its own which gets both (where the OS has them, see
	// setProcess), and it dies with the agent (Pdeathsig), as Compose used
	// to when it ran inside the agent.
	setProcess(cmd)
	cmd.WaitDelay = helperStop

	// Pdeathsig fires when the thread that started the child exits, not the
	// process: keep this goroutine on its thread until the child is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	err = cmd.Start()
	_, _ = outW.Close(), errW.Close() // the helper has its copies
	if err != nil {
		return nil, fmt.Errorf("compose helper: %w", err)
	}
	var read sync.WaitGroup
	read.Go(func() { _, _ = io.Copy(&out, io.LimitReader(outR, maxResult)) })
	read.Go(func() { relay(h.log, errR) })
	werr := cmd.Wait()
	// What the helper left in its group goes with it: it would hold the
	// pipes open, and nothing waits for it.
	killGroup(cmd.Process)
	drained := make(chan struct{})
	go func() { read.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(helperDrain):
		// Something outside the group still holds a pipe: stop reading.
		_, _ = outR.Close(), errR.Close()
		<-drained
		h.log.Warn("compose helper: its output was still open after it exited; stopped reading", "project", project)
	}

	attrs := []any{"op", req.Op, "project", project, "took", time.Since(start).Round(time.Millisecond)}
	if kib, ok := maxRSS(cmd.ProcessState); ok {
		attrs = append(attrs, "max_rss_kib", kib)
	}
	h.log.Info("compose helper done", attrs...)

	var res Result
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("compose helper %s: %v, no answer (%v): its log above says why", path, werr, jerr)
	}
	return &res, res.Err()
}

// maxLogLine bounds one line of the helper's log; what is over it is cut.
const maxLogLine = 256 << 10

// relay logs the helper's JSON log lines through log, at their level with
// their attributes; other lines (a panic's trace) at warn level. A line
// over maxLogLine is logged cut, at warn level, and the lines after it as
// usual. It reads r to its end, so the helper never blocks on a full pipe.
func relay(log *slog.Logger, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	n := 0 // the line's length, also what was cut
	for {
		chunk, err := br.ReadSlice('\n')
		n += len(chunk)
		if room := maxLogLine - len(line); room > 0 {
			line = append(line, chunk[:min(room, len(chunk))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		switch {
		case n > maxLogLine:
			log.Warn("compose helper: log line cut", "bytes", n, "kept", len(line), "stderr", strings.ToValidUTF8(string(line), "\uFFFD"))
		case len(line) > 0:
			relayLine(log, bytes.TrimSuffix(line, []byte("\n")))
		}
		line, n = line[:0], 0
		if err != nil {
			return
		}
	}
}

// relayLine logs one line of the helper's log.
func relayLine(log *slog.Logger, line []byte) {
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		if s := strings.TrimSpace(string(line)); s != "" {
			log.Warn("compose helper", "stderr", s)
		}
		return
	}
	var level slog.Level
	if s, ok := rec[slog.LevelKey].(string); !ok || level.UnmarshalText([]byte(s)) != nil {
		level = slog.LevelInfo
	}
	msg, _ := rec[slog.MessageKey].(string)
	delete(rec, slog.LevelKey)
	delete(rec, slog.MessageKey)
	delete(rec, slog.TimeKey)
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		attrs = append(attrs, k, rec[k])
	}
	log.Log(context.Background(), level, msg, attrs...)
}
