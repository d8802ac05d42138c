package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost/protocol"
	"outpost/scheduler"
)

// Command kinds of edge stacks, as the server's reconciler queues them
// (the agent's edgeagent.KindStackDeploy and KindStackRemove).
const (
	kindStackDeploy = "stack.deploy" // stack, version, project; Blob: the content's hash
	kindStackRemove = "stack.remove" // stack, version, project
)

func isStackCommand(c protocol.Command) bool {
	return c.Kind == kindStackDeploy || c.Kind == kindStackRemove
}

// bringsStack says whether an answer gives a stack command.
func bringsStack(cs []protocol.Command) bool { return slices.ContainsFunc(cs, isStackCommand) }

// stackState is a device's edge stacks as the agent keeps them (its
// work.cbor), without Compose: the content it holds by hash, the version
// of each stack it runs, and the statuses not yet carried by an answered
// request. A stack is reported running as soon as it is taken.
type stackState struct {
	held     map[[sha256.Size]byte]bool
	running  map[uint64]uint64
	statuses map[uint64]protocol.StackStatus
}

// keep holds the content an answer carries, each checked against its hash
// before any command of the answer uses it, as the agent's keepBlobs.
func (s *stackState) keep(bs []protocol.Blob) error {
	for _, b := range bs {
		sum := sha256.Sum256(b.Data)
		if !bytes.Equal(sum[:], b.Hash) {
			return fmt.Errorf("content %x does not match its hash", b.Hash)
		}
		if s.held == nil {
			s.held = map[[sha256.Size]byte]bool{}
		}
		s.held[sum] = true
	}
	return nil
}

// take is a stack command as the agent takes it: a deploy needs its
// content held, and the stack is then reported running at its version; a
// remove is reported removed. It returns the command's stack.
func (s *stackState) take(c protocol.Command, now time.Time) (uint64, error) {
	stack, err := argID(c, "stack")
	if err != nil {
		return 0, err
	}
	version, err := argID(c, "version")
	if err != nil {
		return stack, err
	}
	if c.Args["project"] == "" {
		return stack, fmt.Errorf("%s: args.project: required", c.Kind)
	}
	if s.running == nil {
		s.running, s.statuses = map[uint64]uint64{}, map[uint64]protocol.StackStatus{}
	}
	st := protocol.StackStatus{StackID: stack, Version: version, Status: protocol.StatusRemoved, Time: now.Unix()}
	if c.Kind == kindStackDeploy {
		var h [sha256.Size]byte
		if len(c.Blob) != len(h) || !s.held[[sha256.Size]byte(c.Blob)] {
			return stack, fmt.Errorf("%s %d: content %x is not on this device", c.Kind, stack, c.Blob)
		}
		s.running[stack] = version
		st.Status = protocol.StatusRunning
	} else {
		delete(s.running, stack)
	}
	s.statuses[stack] = st
	return stack, nil
}

// owed is the statuses to report, by stack; nil for none.
func (s *stackState) owed() []protocol.StackStatus {
	if len(s.statuses) == 0 {
		return nil
	}
	out := make([]protocol.StackStatus, 0, len(s.statuses))
	for _, st := range s.statuses {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b protocol.StackStatus) int { return int(a.StackID) - int(b.StackID) })
	return out
}

// confirm drops the statuses an answered request carried (one that
// changed since stays owed) and returns those of them that said running.
func (s *stackState) confirm(sent []protocol.StackStatus) []protocol.StackStatus {
	var running []protocol.StackStatus
	for _, st := range sent {
		if cur, ok := s.statuses[st.StackID]; ok && cur == st {
			delete(s.statuses, st.StackID)
		}
		if st.Status == protocol.StatusRunning {
			running = append(running, st)
		}
	}
	return running
}

func argID(c protocol.Command, name string) (uint64, error) {
	v, err := strconv.ParseUint(c.Args[name], 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%s: args.%s %q: want a positive integer", c.Kind, name, c.Args[name])
	}
	return v, nil
}

// stackCompose is the simulated stack's compose file: the server checks
// it as Compose loads it; the devices never run it.
const stackCompose = `services:
  web:
    image: nginx:1.27-alpine
    restart: unless-stopped
    ports:
      - "8080:80"
`

// deployStack puts the first cfg.StackGroup devices in a static edge group
// and creates an edge stack targeting it, once they have all checked in
// (or ctx ended first: the stack is not created then). Delivery is
// measured from the creating call.
func deployStack(ctx context.Context, cfg Config, a *api, devs []*device, rec *recorder) {
	members := devs[:cfg.StackGroup]
	for _, d := range members {
		for !rec.isUp(d.n) {
			if !scheduler.Wait(ctx, time.Now().Add(200*time.Millisecond)) {
				rec.fail("stack_not_created", fmt.Errorf("device %d had not checked in when commands stopped: the stack over %d devices was not created", d.n, len(members)))
				return
			}
		}
	}
	name := stackName(cfg.Name)
	envs := make([]uint64, len(members))
	targets := make([]int, len(members))
	for i, d := range members {
		envs[i], targets[i] = d.env, d.n
	}
	group, err := a.createEdgeGroup(ctx, name, envs)
	if err != nil {
		rec.fail("stack_create", err)
		return
	}
	at := time.Now()
	id, version, err := a.createStack(ctx, name, stackCompose, group)
	if err != nil {
		rec.fail("stack_create", err)
		return
	}
	rec.stackCreated(&stackRun{id: id, version: version, created: at, targets: targets})
	fmt.Fprintf(cfg.Progress, "edge stack %d created over %d devices\n", id, len(members))
}

// stackName is a compose project name made of the fleet's name: lower
// case letters, digits, _ and -.
func stackName(fleet string) string {
	b := []byte(strings.ToLower(fleet))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			b[i] = '-'
		}
	}
	name := strings.TrimLeft(string(b), "-_")
	if name == "" {
		name = "sim"
	}
	if len(name) > 50 {
		name = name[:50]
	}
	return name + "-stack"
}
