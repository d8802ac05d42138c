package stacks

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

func TestJudge(t *testing.T) {
	health := func(s container.HealthStatus) *container.Health {
		return &container.Health{Status: s, FailingStreak: 3, Log: []*container.HealthcheckResult{{ExitCode: 1, Output: "connection refused\nmore"}}}
	}
	tests := []struct {
		name      string
		o         observed
		deploying bool
		want      verdict
		why       string // substring
	}{
		{"running", observed{state: container.StateRunning}, false, ready, ""},
		{"healthy", observed{state: container.StateRunning, health: health(container.Healthy)}, false, ready, ""},
		{"health starting", observed{state: container.StateRunning, health: health(container.Starting)}, false, pending, "health check starting"},
		{"unhealthy", observed{state: container.StateRunning, health: health(container.Unhealthy)}, false, failed, "unhealthy: 3 failed health checks in a row, last output: connection refused"},
		{"one-shot done", observed{state: container.StateExited, restart: container.RestartPolicyDisabled}, false, ready, ""},
		{"one-shot done, on-failure", observed{state: container.StateExited, restart: container.RestartPolicyOnFailure}, false, ready, ""},
		{"stopped", observed{state: container.StateExited, restart: container.RestartPolicyAlways}, false, failed, "stopped (exit code 0, restart always)"},
		{"crashed", observed{state: container.StateExited, exitCode: 3, restart: container.RestartPolicyDisabled}, false, failed, "exited with code 3"},
		{"oom", observed{state: container.StateExited, exitCode: 137, oom: true}, false, failed, "exited with code 137, out of memory"},
		{"restarting", observed{state: container.StateRestarting, exitCode: 1, restarts: 1}, false, pending, "restarting (exited with code 1)"},
		{"crash loop", observed{state: container.StateRestarting, exitCode: 1, restarts: 3}, false, failed, "crash loop: restarted 3 times"},
		{"created while deploying", observed{state: container.StateCreated}, true, pending, "not started yet"},
		{"created, start failed", observed{state: container.StateCreated, err: "port is already allocated"}, false, failed, "not started: port is already allocated"},
		{"dead", observed{state: container.StateDead}, false, failed, "dead"},
		{"paused", observed{state: container.StatePaused}, false, failed, "paused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, why := judge(tt.o, tt.deploying)
			if v != tt.want || !strings.Contains(why, tt.why) || (tt.why == "" && why != "") {
				t.Errorf("judge = %v, %q; want %v, %q", v, why, tt.want, tt.why)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	run := func(svc string) observed { return observed{service: svc, number: "1", state: container.StateRunning} }
	exited := func(svc string, code int) observed {
		return observed{service: svc, number: "1", state: container.StateExited, exitCode: code, restart: container.RestartPolicyDisabled}
	}
	starting := func(svc string) observed {
		o := run(svc)
		o.health = &container.Health{Status: container.Starting}
		return o
	}
	tests := []struct {
		name      string
		expected  []string
		deploying bool
		cs        []observed
		want      State
	}{
		{"nothing", nil, false, nil, State{Phase: Missing}},
		{"nothing, known services", []string{"a", "b"}, false, nil, State{Phase: Missing, Services: 2}},
		{"all running", nil, false, []observed{run("a"), run("b")}, State{Phase: Running, Services: 2, Ready: 2}},
		{"one-shot and running", []string{"job", "web"}, false, []observed{exited("job", 0), run("web")}, State{Phase: Running, Services: 2, Ready: 2}},
		{"starting", nil, false, []observed{run("a"), starting("b")}, State{Phase: Deploying, Services: 2, Ready: 1,
			Message: "service b: health check starting"}},
		{"failed first in message", nil, false, []observed{starting("a"), exited("b", 2)}, State{Phase: Failed, Services: 2,
			Message: "service b: exited with code 2; service a: health check starting"}},
		{"failed reads deploying while deploying", nil, true, []observed{exited("a", 137)}, State{Phase: Deploying, Services: 1,
			Message: "deploy under way; service a: exited with code 137"}},
		{"expected service gone", []string{"a", "b"}, false, []observed{run("a")}, State{Phase: Failed, Services: 2, Ready: 1,
			Message: "service b: no container: deploy again"}},
		{"expected service not there yet", []string{"a", "b"}, true, []observed{run("a")}, State{Phase: Deploying, Services: 2, Ready: 1,
			Message: "deploy under way; service b: no container yet"}},
		{"replicas", nil, false, []observed{run("a"), {service: "a", number: "2", state: container.StateExited, exitCode: 1}},
			State{Phase: Failed, Services: 1, Message: "service a #2: exited with code 1"}},
		{"message is short", nil, false, []observed{exited("a", 1), exited("b", 1), exited("c", 1), exited("d", 1), exited("e", 1)},
			State{Phase: Failed, Services: 5, Message: "service a: exited with code 1; service b: exited with code 1; service c: exited with code 1; and 2 more"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.expected, tt.deploying, tt.cs); got != tt.want {
				t.Errorf("summarize =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}
