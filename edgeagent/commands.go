package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"outpost/kube"
	"outpost/protocol"
)

func commandsPath(dir string) string { return filepath.Join(dir, "commands.cbor") }

// Journal bounds.
const (
	// keepDone is how many executed command IDs the journal keeps; older ones
	// are folded into the high-water mark.
	keepDone = 1000
	// maxAckError bounds the error text of one ack (engine errors are short;
	// this guards the outbox against a pathological one).
	maxAckError = 1024
	// maxAcksPerRequest bounds how many acks one request carries, oldest
	// first; the rest go with the next requests.
	maxAcksPerRequest = 256
)

// Texts of the acks the agent makes up itself.
const (
	errInterrupted = "the agent stopped while running this command; its outcome is unknown"
	errForgotten   = "this command ran earlier and its result was already reported; the agent no longer keeps it"
	errTextDropped = "this command ran earlier and failed; its error text was already reported and is no longer kept"
	errUnrecorded  = "this command ran but the agent could not record its result; its outcome is unknown"
)

// journal is the persisted record of the commands the agent was given: which
// IDs started, how each ended, and the acks the server has not confirmed.
//
// A command ID runs at most once, ever: its entry is written (Status unknown,
// "started") before it runs, and its result is written (entry and outbox)
// before any request carries the ack. An ID is "seen" when it is in Done or is
// at most Mark.
type journal struct {
	// Mark is the high-water mark of compaction: every ID <= Mark that is not
	// in Done ran and was dropped from Done to keep the journal bounded.
	Mark uint64 `cbor:"1,keyasint,omitempty"`
	// Done holds the last keepDone command IDs that started, by ID ascending.
	Done []doneCommand `cbor:"2,keyasint,omitempty"`
	// Outbox holds the acks no answered request has carried yet, in the
	// order they were made.
	Outbox []protocol.CommandAck `cbor:"3,keyasint,omitempty"`

	path string
	// unsaved holds the results finish could not save, by command ID: the
	// command ran, but memory and disk still say it started. reack records
	// the result when the command comes again.
	unsaved map[uint64]protocol.CommandAck
}

// doneCommand is one command that started. Status StatusUnknown means it
// started and has no result yet: the agent is running it, or was killed
// while it did.
type doneCommand struct {
	ID       uint64          `cbor:"1,keyasint"`
	Status   protocol.Status `cbor:"2,keyasint,omitempty"`
	Finished int64           `cbor:"3,keyasint,omitempty"`
}

// loadJournal reads the journal in dir. A command that started on an earlier
// run and has no result is not run again: it is acked Failed, its outcome
// unknown. A damaged journal is an error, not a fresh start, since starting
// afresh could run commands a second time.
func loadJournal(dir string, now time.Time) (*journal, error) {
	j := &journal{path: commandsPath(dir)}
	b, err := os.ReadFile(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return j, nil
	} else if err != nil {
		return nil, fmt.Errorf("command journal: %w", err)
	}
	if err := protocol.Unmarshal(b, j); err != nil {
		return nil, fmt.Errorf("command journal %s is damaged (%v): move it aside to start with an empty one, knowing that commands the server still holds for this device may then run a second time", j.path, err)
	}
	interrupted := false
	for i := range j.Done {
		if d := &j.Done[i]; d.Status == protocol.StatusUnknown {
			d.Status, d.Finished = protocol.StatusFailed, now.Unix()
			j.Outbox = append(j.Outbox, protocol.CommandAck{ID: d.ID, Status: d.Status, Error: errInterrupted, Finished: d.Finished})
			interrupted = true
		}
	}
	if interrupted {
		if err := j.save(); err != nil {
			return nil, fmt.Errorf("command journal: %w", err)
		}
	}
	return j, nil
}

func (j *journal) save() error {
	b, err := protocol.Marshal(j)
	if err != nil {
		return err
	}
	return writeFileAtomic(j.path, b, 0o600)
}

// find returns the index of id in Done, or where it would go.
func (j *journal) find(id uint64) (int, bool) {
	return slices.BinarySearchFunc(j.Done, id, func(d doneCommand, id uint64) int {
		switch {
		case d.ID < id:
			return -1
		case d.ID > id:
			return 1
		}
		return 0
	})
}

// seen reports whether command id started on this device, ever.
func (j *journal) seen(id uint64) bool {
	_, ok := j.find(id)
	return ok || id <= j.Mark
}

// pending returns the acks the next request carries.
func (j *journal) pending() []protocol.CommandAck {
	return slices.Clone(j.Outbox[:min(len(j.Outbox), maxAcksPerRequest)])
}

// saveOrUndo saves the journal; if that fails it calls undo, which puts the
// in-memory journal back as it was before the change, so memory never holds
// what the disk does not.
func (j *journal) saveOrUndo(undo func()) error {
	err := j.save()
	if err != nil {
		undo()
	}
	return err
}

// confirm drops the acks an answered request carried, and saves.
func (j *journal) confirm(sent []protocol.CommandAck) error {
	if len(sent) == 0 {
		return nil
	}
	n := len(j.Outbox)
	j.Outbox = slices.DeleteFunc(j.Outbox, func(a protocol.CommandAck) bool {
		// An ID is acked once with one result, so the ID names the ack.
		return slices.ContainsFunc(sent, func(s protocol.CommandAck) bool { return s.ID == a.ID })
	})
	if len(j.Outbox) == n {
		return nil
	}
	return j.save()
}

// start records that command id is about to run, and saves it.
func (j *journal) start(id uint64) error {
	i, ok := j.find(id)
	if ok || id <= j.Mark {
		return fmt.Errorf("command %d started already", id) // a bug: callers check seen
	}
	j.Done = slices.Insert(j.Done, i, doneCommand{ID: id})
	// Unsaved, the command must not run; undone, it runs when it comes again.
	return j.saveOrUndo(func() { j.Done = slices.Delete(j.Done, i, i+1) })
}

// finish records the result of a started command, queues its ack and saves.
// It compacts Done to keepDone entries. If the save fails the journal stays
// as it was (the command started, no result) and the result is kept in
// unsaved for reack.
func (j *journal) finish(ack protocol.CommandAck) error {
	i, ok := j.find(ack.ID)
	if !ok {
		return fmt.Errorf("command %d finished without having started", ack.ID)
	}
	ack.Error = cutText(ack.Error, maxAckError)
	done, entry, mark, outbox := j.Done, j.Done[i], j.Mark, len(j.Outbox)
	j.Done[i].Status, j.Done[i].Finished = ack.Status, ack.Finished
	j.Outbox = append(j.Outbox, ack)
	if over := len(j.Done) - keepDone; over > 0 {
		// Commands arrive in ID order and run one at a time, so the oldest
		// entries have results; never fold in one that is still running.
		k := 0
		for k < over && j.Done[k].Status != protocol.StatusUnknown {
			j.Mark = max(j.Mark, j.Done[k].ID)
			k++
		}
		// A copy, not slices.Delete: done must stay intact for the undo.
		j.Done = slices.Clone(j.Done[k:])
	}
	err := j.saveOrUndo(func() {
		done[i] = entry
		j.Done, j.Mark = done, mark
		j.Outbox = slices.Delete(j.Outbox, outbox, len(j.Outbox))
	})
	if err != nil {
		if j.unsaved == nil {
			j.unsaved = map[uint64]protocol.CommandAck{}
		}
		j.unsaved[ack.ID] = ack
		return err
	}
	delete(j.unsaved, ack.ID)
	return nil
}

// cutText cuts s to at most n bytes on a rune boundary, marking the cut.
func cutText(s string, n int) string {
	const mark = " [cut]"
	if len(s) <= n {
		return s
	}
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

// reack queues an ack again for a command that arrives after it ran: the
// server did not see the ack (or saw it after listing the command). The
// server ignores duplicates.
func (j *journal) reack(id uint64, now time.Time) error {
	if slices.ContainsFunc(j.Outbox, func(a protocol.CommandAck) bool { return a.ID == id }) {
		return nil // goes with the next request anyway
	}
	ack := protocol.CommandAck{ID: id, Status: protocol.StatusFailed, Error: errForgotten, Finished: now.Unix()}
	if i, ok := j.find(id); ok {
		d := j.Done[i]
		if d.Status == protocol.StatusUnknown {
			// Commands run one at a time, so this one is not running: it
			// ran and finish could not save its result. Record it now.
			a, ok := j.unsaved[id]
			if !ok {
				a = protocol.CommandAck{ID: id, Status: protocol.StatusFailed, Error: errUnrecorded, Finished: now.Unix()}
			}
			return j.finish(a)
		}
		ack = protocol.CommandAck{ID: id, Status: d.Status, Finished: d.Finished}
		if d.Status == protocol.StatusFailed {
			ack.Error = errTextDropped
		}
	}
	n := len(j.Outbox)
	j.Outbox = append(j.Outbox, ack)
	return j.saveOrUndo(func() { j.Outbox = slices.Delete(j.Outbox, n, len(j.Outbox)) })
}

// runCommands runs the commands of an answer in order, each at most once,
// recording each in the journal before it runs and its result before it is
// acked. It stops at the first journal write that fails: a command that
// cannot be recorded as started must not run.
func (s *syncer) runCommands(ctx context.Context, cmds []protocol.Command) error {
	for _, c := range cmds {
		if s.cmds.seen(c.ID) {
			if err := s.cmds.reack(c.ID, s.now()); err != nil {
				return fmt.Errorf("command %d: record ack: %w", c.ID, err)
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err // shutting down: the rest come again next time
		}
		if err := s.cmds.start(c.ID); err != nil {
			return fmt.Errorf("command %d: record start: %w", c.ID, err)
		}
		err := s.execute(ctx, c)
		ack := protocol.CommandAck{ID: c.ID, Status: protocol.StatusOK, Finished: s.now().Unix()}
		switch {
		case err == nil:
			s.log.Info("command done", "id", c.ID, "kind", c.Kind, "args", c.Args)
		case ctx.Err() != nil:
			// Shutting down: the engine call was cut short and may or may
			// not have taken effect.
			ack.Status, ack.Error = protocol.StatusFailed, errInterrupted
		default:
			ack.Status, ack.Error = protocol.StatusFailed, err.Error()
			s.log.Warn("command failed", "id", c.ID, "kind", c.Kind, "args", c.Args, "err", err)
		}
		if err := s.cmds.finish(ack); err != nil {
			return fmt.Errorf("command %d: record result: %w", c.ID, err)
		}
	}
	return nil
}

// execute runs one command: snapshot.now here (it only moves the plan), the
// engine's kinds through the executor.
func (s *syncer) execute(ctx context.Context, c protocol.Command) error {
	switch {
	case c.Kind == KindSnapshotNow:
		s.plan.SnapshotNow(s.now())
		return nil
	case workKinds[c.Kind] && s.work != nil:
		return s.work.execute(c)
	case c.Kind == KindKubeAccess:
		return s.kubeAccess(ctx, c)
	case !engineKinds[c.Kind]:
		return unknownKind(c.Kind)
	}
	return s.exec.Execute(ctx, c)
}

// kubeAccess runs kube.access: the cluster holds exactly the users'
// service accounts and bindings the command lists.
func (s *syncer) kubeAccess(ctx context.Context, c protocol.Command) error {
	if s.access == nil {
		return fmt.Errorf("%s: this agent runs on Docker, which has no Kubernetes users to bind", c.Kind)
	}
	env, err := strconv.ParseUint(c.Args["environment"], 10, 64)
	if err != nil || env == 0 {
		return fmt.Errorf("%s: args.environment %q: want the environment's ID", c.Kind, c.Args["environment"])
	}
	var grants []kube.Grant
	if err := json.Unmarshal([]byte(c.Args["grants"]), &grants); err != nil {
		return fmt.Errorf("%s: args.grants: %w", c.Kind, err)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return s.access.Sync(ctx, env, grants)
}
