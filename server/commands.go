package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"outpost/protocol"
	"outpost/server/store"
)

// Audit action of a queued command.
const auditCommandQueue = "command.queue"

// commandArgs lists, per kind an operator may queue through the API, its
// required and optional arguments.
var commandArgs = map[string]struct{ required, optional []string }{
	"container.start":   {required: []string{"id"}},
	"container.stop":    {required: []string{"id"}, optional: []string{"timeout"}},
	"container.restart": {required: []string{"id"}, optional: []string{"timeout"}},
	"container.kill":    {required: []string{"id"}, optional: []string{"signal"}},
	"container.remove":  {required: []string{"id"}, optional: []string{"force", "volumes"}},
	"image.remove":      {required: []string{"id"}, optional: []string{"force"}},
	"volume.remove":     {required: []string{"name"}, optional: []string{"force"}},
	"snapshot.now":      {},
}

// Argument types: an argument not listed is a string.
var (
	secondsArgs = []string{"timeout"}
	boolArgs    = []string{"force", "volumes"}
)

// commandArgsOf checks a queued command's kind and arguments and gives the
// arguments as the device gets them (strings). Numbers and booleans may be
// given as JSON numbers and booleans or as strings. Every problem is
// reported, sorted.
func commandArgsOf(kind string, raw map[string]json.RawMessage) (map[string]string, []string) {
	spec, known := commandArgs[kind]
	var problems []string
	if !known {
		kinds := slices.Sorted(maps.Keys(commandArgs))
		problems = append(problems, fmt.Sprintf("kind %q: want one of %s", kind, strings.Join(kinds, ", ")))
	}
	args := make(map[string]string, len(raw))
	failed := map[string]bool{}
	for a, v := range raw {
		if known && !slices.Contains(spec.required, a) && !slices.Contains(spec.optional, a) {
			problems = append(problems, fmt.Sprintf("args.%s: %s takes %v", a, kind, append(append([]string{}, spec.required...), spec.optional...)))
			continue
		}
		val, err := commandArg(a, v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("args.%s %s: %v", a, v, err))
			failed[a] = true
			continue
		}
		args[a] = val
	}
	for _, a := range spec.required {
		if !failed[a] && strings.TrimSpace(args[a]) == "" {
			problems = append(problems, fmt.Sprintf("args.%s: required for %s", a, kind))
		}
	}
	slices.Sort(problems)
	return args, problems
}

// commandArg is one argument's value as a string, checked against its type.
func commandArg(name string, v json.RawMessage) (string, error) {
	var str string
	isStr := json.Unmarshal(v, &str) == nil
	switch {
	case slices.Contains(secondsArgs, name):
		var n json.Number
		if !isStr {
			if err := json.Unmarshal(v, &n); err != nil {
				return "", errors.New("seconds, 0 to 3600")
			}
			str = n.String()
		}
		if str == "" {
			return "", nil
		}
		if n, err := strconv.Atoi(str); err != nil || n < 0 || n > 3600 {
			return "", errors.New("seconds, 0 to 3600")
		}
		return str, nil
	case slices.Contains(boolArgs, name):
		var b bool
		if !isStr {
			if err := json.Unmarshal(v, &b); err != nil {
				return "", errors.New("true or false")
			}
			return strconv.FormatBool(b), nil
		}
		if str != "" && str != "true" && str != "false" {
			return "", errors.New("true or false")
		}
		return str, nil
	default:
		if !isStr {
			return "", errors.New("a string")
		}
		return str, nil
	}
}

// maxRelease bounds the commands one answer carries; the rest follow.
const maxRelease = 100

// releases remembers when each environment last had commands released, so
// they go out only as often as its command frequency allows.
type releases struct {
	mu   sync.Mutex // guards last
	last map[uint64]time.Time
}

// due reports whether env may receive commands now, and if so marks it.
// A tenth of the interval is forgiven: the agent jitters its ticks by that.
func (r *releases) due(env uint64, now time.Time, every time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[uint64]time.Time{}
	}
	if last, ok := r.last[env]; ok && now.Sub(last) < every*9/10 {
		return false
	}
	r.last[env] = now
	return true
}

// syncCommands takes the acks a device sent and, when it pulls commands
// and its command frequency allows, gives it the pending ones.
//
// No command kind bypasses the command frequency: an async device on a
// metered link decides how often it pays for a pull, and snapshot.now waits
// like the others.
//
// A standard device (poll) gets its pending commands at every poll: its poll
// interval is its command frequency.
func (s *Server) syncCommands(env *store.Environment, req *protocol.SyncRequest, freq protocol.Frequencies, now time.Time, ans *protocol.SyncAnswer, poll bool) error {
	if err := s.takeReports(env.ID, req.Acks, req.StackStatuses, req.JobResults, now); err != nil {
		return err
	}
	if req.Include&protocol.IncludeCommands == 0 || (!poll && !s.releases.due(env.ID, now, time.Duration(freq.Command)*time.Second)) {
		return nil
	}
	pending, err := s.store.PendingCommands(env.ID, maxRelease)
	if err != nil {
		return err
	}
	ans.Commands, ans.Blobs, err = s.releaseCommands(env, pending)
	return err
}

// takeReports applies what a device reports: command acks (and what they
// move: stack statuses, job targets), stack statuses and job runs. Each is
// idempotent, so a report sent twice (its answer was lost) changes nothing
// the second time.
func (s *Server) takeReports(env uint64, in []protocol.CommandAck, stacks []protocol.StackStatus, jobs []protocol.JobResult, now time.Time) error {
	if len(in) > 0 {
		acks := make([]store.Ack, 0, len(in))
		for _, a := range in {
			acks = append(acks, store.Ack{ID: a.ID, OK: a.Status == protocol.StatusOK, Error: a.Error, Finished: a.Finished})
		}
		done, err := s.store.AckCommands(env, acks, now.Unix())
		if err != nil {
			return fmt.Errorf("ack commands: %w", err)
		}
		if err := s.afterAcks(env, done, now.Unix()); err != nil {
			return fmt.Errorf("ack commands: %w", err)
		}
	}
	if err := s.ingestStackStatuses(env, stacks, now.Unix()); err != nil {
		return err
	}
	if err := s.ingestJobResults(env, jobs, now.Unix()); err != nil {
		return fmt.Errorf("job results: %w", err)
	}
	return nil
}

// handleQueueCommand serves POST /api/environments/{id}/commands
// {kind, args}: a container, image or volume operation, or snapshot.now,
// for the device to run at its next command pull.
func (s *Server) handleQueueCommand(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	var req struct {
		Kind string                     `json:"kind"`
		Args map[string]json.RawMessage `json:"args"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	args, problems := commandArgsOf(req.Kind, req.Args)
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	c, err := s.queueCommand(r.RemoteAddr, ss.user, e.ID, req.Kind, args)
	if err != nil {
		s.log.Error("queue command", "env", e.ID, "err", err)
		writeErr(w, http.StatusInternalServerError, "could not queue the command")
		return
	}
	writeJSON(w, http.StatusAccepted, c)
}

// queueCommand appends a checked command to environment env's log for
// user (from remote), audited.
func (s *Server) queueCommand(remote, user string, env uint64, kind string, args map[string]string) (*store.Command, error) {
	c := &store.Command{Env: env, Kind: kind, Args: args, Created: s.now().Unix(), By: user}
	if err := s.store.AddCommand(c); err != nil {
		return nil, err
	}
	s.auditAt(remote, user, auditCommandQueue, envTarget(env), fmt.Sprintf("command %d: %s %v", c.ID, c.Kind, c.Args))
	return c, nil
}

// handleCommands serves GET /api/environments/{id}/commands: what waits for
// the device, and the results of what it ran (newest first, ?limit=).
func (s *Server) handleCommands(w http.ResponseWriter, r *http.Request, _ session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	limit, _, err := pageParams(r, 50, store.ResultsLimit)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	pending, err := s.store.PendingCommands(e.ID, store.ResultsLimit)
	if err == nil {
		var results []store.Command
		if results, err = s.store.CommandResults(e.ID, limit); err == nil {
			writeJSON(w, http.StatusOK, map[string]any{"pending": nonNilCommands(pending), "results": nonNilCommands(results)})
			return
		}
	}
	s.log.Error("list commands", "env", e.ID, "err", err)
	writeErr(w, http.StatusInternalServerError, "could not read the command log")
}

func nonNilCommands(c []store.Command) []store.Command {
	out := make([]store.Command, 0, len(c))
	for _, x := range c {
		out = append(out, redacted(x))
	}
	return out
}

// redacted is c as a command log shows it: a kube.access command's grants
// name who is assigned which namespaces, which only environment
// administrators see (GET .../kubernetes/namespaces/access), so the log
// says how many users it carries instead.
func redacted(c store.Command) store.Command {
	if c.Kind != kindKubeAccess {
		return c
	}
	var g []json.RawMessage
	_ = json.Unmarshal([]byte(c.Args["grants"]), &g)
	c.Args = map[string]string{"environment": c.Args["environment"], "grants": fmt.Sprintf("%d users", len(g))}
	return c
}
