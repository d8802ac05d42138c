package stacks

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// The labels Compose puts on a project's containers (its pkg/api names
// them; the compose helper's tests hold these equal), read here without
// linking Compose into the agent.
const (
	ProjectLabel         = "com.docker.compose.project"
	ServiceLabel         = "com.docker.compose.service"
	ConfigHashLabel      = "com.docker.compose.config-hash"
	ContainerNumberLabel = "com.docker.compose.container-number"
	OneoffLabel          = "com.docker.compose.oneoff"
)

// Phase is where a stack is, judged from its containers.
type Phase string

// The phases, from the containers' state and health as the engine reports
// them. See Status for the rules.
const (
	Missing   Phase = "missing"   // no container of the project
	Deploying Phase = "deploying" // containers exist, some are not ready yet
	Running   Phase = "running"   // every service is ready
	Failed    Phase = "failed"    // a container exited, died, is unhealthy or crash-loops
)

// State is a stack's state.
type State struct {
	Phase    Phase
	Message  string // for Deploying and Failed: which services and why, short
	Services int    // services known: from the last Deploy and from the containers' labels
	Ready    int    // services whose containers are all ready
}

// crashLoop is the restart count from which a restarting container counts
// as failed rather than starting.
const crashLoop = 3

// maxProblems is how many problems Message lists.
const maxProblems = 3

// Status reports project's state from its containers (those labelled
// com.docker.compose.project=project, not one-off `compose run` ones),
// inspected on the engine now; it does not depend on how Deploy returned.
//
// A container is ready when it runs and, if it declares a health check, is
// healthy; a one-shot container that exited 0 with restart policy "no" or
// "on-failure" is ready too (it finished its job). It is not ready yet when
// it is created but not started while a Deploy is under way, restarting
// fewer than 3 times, or its health is "starting". It has failed when it
// exited non-zero, or exited 0 under restart policy "always" or
// "unless-stopped" (someone stopped it), is dead, paused, unhealthy,
// restarting for the 3rd time or more, or is created but not started with
// no Deploy under way.
//
// A service is ready when it has containers and all are ready. The
// services are those of the last successful Deploy through this Runner
// (forgotten on restart) and those found on the containers' labels; a
// service of the last Deploy without any container has failed, or is not
// ready yet while a Deploy is under way.
//
// The phase is Missing without containers, else Failed if a service has
// failed, else Deploying if one is not ready, else Running. While a Deploy
// of the project is under way Failed reads Deploying: replaced containers
// are stopped on the way.
func (r *Runner) Status(ctx context.Context, project string) (State, error) {
	if err := validProject(project); err != nil {
		return State{}, fmt.Errorf("status %s: %w: %w", project, ErrInvalid, err)
	}
	f := make(client.Filters).
		Add("label", ProjectLabel+"="+project).
		Add("label", ConfigHashLabel). // leaves out Compose's hook containers
		Add("label", OneoffLabel+"=False")
	list, err := r.engine.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return State{}, fmt.Errorf("status %s: list containers: %w", project, EngineHint(err))
	}
	var cs []observed
	for _, c := range list.Items {
		in, err := r.engine.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // removed since the list
		}
		if err != nil {
			return State{}, fmt.Errorf("status %s: inspect %s: %w", project, c.ID, EngineHint(err))
		}
		cs = append(cs, observe(in.Container))
	}

	r.mu.Lock()
	var expected []string
	deploying := false
	if st := r.stacks[project]; st != nil {
		expected = slices.Clone(st.services)
		deploying = st.deploying > 0
	}
	r.mu.Unlock()
	return summarize(expected, deploying, cs), nil
}

// observed is what Status needs of one container.
type observed struct {
	service  string
	number   string // com.docker.compose.container-number
	state    container.ContainerState
	exitCode int
	oom      bool
	err      string // the engine's State.Error
	restarts int
	restart  container.RestartPolicyMode
	health   *container.Health // nil without a health check
}

func observe(in container.InspectResponse) observed {
	o := observed{restarts: in.RestartCount}
	if in.Config != nil {
		o.service = in.Config.Labels[ServiceLabel]
		o.number = in.Config.Labels[ContainerNumberLabel]
	}
	if in.HostConfig != nil {
		o.restart = in.HostConfig.RestartPolicy.Name
	}
	if s := in.State; s != nil {
		o.state, o.exitCode, o.oom, o.err, o.health = s.Status, s.ExitCode, s.OOMKilled, s.Error, s.Health
	}
	return o
}

// verdict is a container's or service's readiness, worst last.
type verdict int

const (
	ready verdict = iota
	pending
	failed
)

// judge applies Status's rules to one container; why is empty when ready.
func judge(o observed, deploying bool) (verdict, string) {
	switch o.state {
	case container.StateRunning:
		if o.health == nil {
			return ready, ""
		}
		switch o.health.Status {
		case container.Unhealthy:
			return failed, "unhealthy" + lastProbe(o.health)
		case container.Starting:
			return pending, "health check starting"
		}
		return ready, "" // healthy, or "none"
	case container.StateExited:
		if o.exitCode == 0 && (o.restart == container.RestartPolicyDisabled || o.restart == "" || o.restart == container.RestartPolicyOnFailure) {
			return ready, "" // a one-shot job that finished
		}
		if o.exitCode == 0 {
			return failed, fmt.Sprintf("stopped (exit code 0, restart %s)", o.restart)
		}
		return failed, exitReason(o)
	case container.StateRestarting:
		if o.restarts >= crashLoop {
			return failed, fmt.Sprintf("crash loop: restarted %d times, %s", o.restarts, exitReason(o))
		}
		return pending, fmt.Sprintf("restarting (%s)", exitReason(o))
	case container.StateCreated:
		if deploying {
			return pending, "created, not started yet"
		}
		if o.err != "" {
			return failed, "not started: " + o.err
		}
		return failed, "created but not started: deploy again"
	case container.StateRemoving:
		return pending, "being removed"
	case container.StatePaused:
		return failed, "paused"
	case container.StateDead:
		return failed, "dead" + suffix(o.err)
	}
	return pending, fmt.Sprintf("state %q", o.state)
}

func exitReason(o observed) string {
	s := fmt.Sprintf("exited with code %d", o.exitCode)
	if o.oom {
		s += ", out of memory"
	}
	return s + suffix(o.err)
}

// lastProbe describes the failing health probes: how many and the last
// output, shortened.
func lastProbe(h *container.Health) string {
	s := fmt.Sprintf(": %d failed health checks in a row", h.FailingStreak)
	if h.FailingStreak == 1 {
		s = ": health check failed"
	}
	if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
		out := strings.TrimSpace(h.Log[n-1].Output)
		if i := strings.IndexByte(out, '\n'); i >= 0 {
			out = out[:i]
		}
		if len(out) > 80 {
			out = out[:77] + "..."
		}
		if out != "" {
			s += ", last output: " + out
		}
	}
	return s
}

// num is a container number label as a number, for sorting.
func num(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func suffix(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}

// summarize turns containers into a State by Status's rules.
func summarize(expected []string, deploying bool, cs []observed) State {
	byService := map[string][]observed{}
	for _, name := range expected {
		byService[name] = nil
	}
	for _, c := range cs {
		byService[c.service] = append(byService[c.service], c)
	}
	st := State{Services: len(byService)}
	if len(cs) == 0 {
		st.Phase = Missing
		return st
	}

	type problem struct {
		v   verdict
		msg string
	}
	worst := ready
	var problems []problem
	for _, name := range slices.Sorted(maps.Keys(byService)) {
		containers := byService[name]
		sort.Slice(containers, func(i, j int) bool { return num(containers[i].number) < num(containers[j].number) })
		v := ready
		if len(containers) == 0 {
			v = failed
			why := "no container: deploy again"
			if deploying {
				v, why = pending, "no container yet"
			}
			problems = append(problems, problem{v, fmt.Sprintf("service %s: %s", name, why)})
		}
		for _, c := range containers {
			cv, why := judge(c, deploying)
			if cv == ready {
				continue
			}
			v = max(v, cv)
			who := "service " + name
			if len(containers) > 1 {
				who += " #" + c.number
			}
			problems = append(problems, problem{cv, fmt.Sprintf("%s: %s", who, why)})
		}
		if v == ready {
			st.Ready++
		}
		worst = max(worst, v)
	}

	switch {
	case worst == failed && !deploying:
		st.Phase = Failed
	case worst != ready:
		st.Phase = Deploying
	default:
		st.Phase = Running
	}
	// Failures first, then by service.
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].v > problems[j].v })
	var msgs []string
	for i, p := range problems {
		if i == maxProblems {
			msgs = append(msgs, fmt.Sprintf("and %d more", len(problems)-maxProblems))
			break
		}
		msgs = append(msgs, p.msg)
	}
	st.Message = strings.Join(msgs, "; ")
	if deploying && worst != ready {
		st.Message = "deploy under way; " + st.Message
	}
	return st
}
