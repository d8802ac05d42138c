package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
)

const testCompose = "services:\n  web:\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n"

// bound stages a trusted environment, indexes it and binds a scripted device.
func bound(t testing.TB, s *Server, h http.Handler, name string) *device {
	t.Helper()
	env := stage(t, s, &protocol.Frequencies{Command: 1})
	e, err := s.store.Environment(env)
	if err != nil {
		t.Fatal(err)
	}
	s.indexEnvironment(e)
	dev := newDevice(t, h, env, name)
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	return dev
}

// pull makes a request that pulls commands, carrying the given reports,
// after letting the command frequency pass.
func (d *device) pull(s *Server, acks []protocol.CommandAck, stacks []protocol.StackStatus, jobs []protocol.JobResult) *protocol.SyncAnswer {
	d.t.Helper()
	s.releases.mu.Lock()
	delete(s.releases.last, d.env)
	s.releases.mu.Unlock()
	req := d.ping()
	req.Include |= protocol.IncludeCommands
	req.Acks, req.StackStatuses, req.JobResults = acks, stacks, jobs
	status, ans, perr := d.sync(req)
	if status != http.StatusOK {
		d.t.Fatalf("pull: %d %v", status, perr)
	}
	return ans
}

func okAcks(cs []protocol.Command) []protocol.CommandAck {
	var out []protocol.CommandAck
	for _, c := range cs {
		out = append(out, protocol.CommandAck{ID: c.ID, Status: protocol.StatusOK})
	}
	return out
}

type statusMatrix struct {
	Version      uint64           `json:"version"`
	Summary      map[string]int   `json:"summary"`
	Environments []stackStatusRow `json:"environments"`
}

func (m statusMatrix) of(env uint64) string {
	for _, r := range m.Environments {
		if r.Env == env {
			return r.Status
		}
	}
	return "absent"
}

func TestEdgeStackLifecycle(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	_, reader := addUser(t, s, "reader", RoleReadOnly, "pw")
	a, b := bound(t, s, hs.Config.Handler, "a"), bound(t, s, hs.Config.Handler, "b")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "shops", "environmentIds": []uint64{a.env, b.env}}, &g, http.StatusCreated)

	// Bad input: every problem named at once, nothing stored.
	status, body := call(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "Bad Name", "composeFile": "services: [", "edgeGroupIds": []uint64{999},
		"registries": []map[string]string{{"url": "registry.example.com"}},
	})
	for _, want := range []string{"Bad Name", "composeFile:", "edge group", "username and password required"} {
		if status != http.StatusBadRequest || !strings.Contains(string(body), want) {
			t.Errorf("bad stack: %d %s, want it to mention %q", status, body, want)
		}
	}
	apiJSON(t, hs, "POST", "/api/edge-stacks", reader, map[string]any{"name": "web"}, nil, http.StatusForbidden)

	const password = "s3cret-registry-password"
	var st stackView
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "web", "composeFile": testCompose, "env": map[string]string{"GREETING": "hi"}, "edgeGroupIds": []uint64{g.ID},
		"registries": []map[string]string{{"url": "registry.example.com", "username": "bot", "password": password}},
	}, &st, http.StatusCreated)
	if st.Version != 1 || st.Hash == "" || len(st.RegistryNames) != 1 {
		t.Fatalf("created: %+v", st)
	}
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}

	// Each device gets the deploy with its content and its sealed credentials.
	var content []byte
	for _, d := range []*device{a, b} {
		ans := d.pull(s, nil, nil, nil)
		if len(ans.Commands) != 1 || ans.Commands[0].Kind != kindStackDeploy || ans.Commands[0].Args["project"] != "web" || len(ans.Blobs) != 1 {
			t.Fatalf("device %s: %+v", d.edgeID, ans)
		}
		c := ans.Commands[0]
		if !bytes.Equal(c.Blob, ans.Blobs[0].Hash) || fmt.Sprintf("%x", sha256.Sum256(ans.Blobs[0].Data)) != st.Hash {
			t.Fatalf("blob hash does not match its content")
		}
		content = ans.Blobs[0].Data
		plain, err := protocol.OpenSecret(d.mac, c.ID, c.Secret)
		if err != nil || !bytes.Contains(plain, []byte(password)) {
			t.Fatalf("device %s: secret %q %v", d.edgeID, plain, err)
		}
		if other := map[*device]*device{a: b, b: a}[d]; other.mac != nil {
			if _, err := protocol.OpenSecret(other.mac, c.ID, c.Secret); err == nil {
				t.Fatal("another device opened the secret")
			}
		}
		// Acked: acknowledged; then the device reports its progress.
		d.pull(s, okAcks(ans.Commands), nil, nil)
	}
	var sc protocol.StackContent
	if err := protocol.Unmarshal(content, &sc); err != nil || string(sc.Compose) != testCompose || sc.Env["GREETING"] != "hi" {
		t.Fatalf("content: %+v %v", sc, err)
	}
	var m statusMatrix
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), reader, nil, &m, http.StatusOK)
	if m.of(a.env) != stackAcknowledged || m.of(b.env) != stackAcknowledged {
		t.Fatalf("after acks: %+v", m)
	}
	// A deploy in progress says what it waits for, as progress, not as
	// an error; the message goes once the stack runs.
	a.pull(s, nil, []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusDeploying, Error: "1 of 2 replicas available"}}, nil)
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), reader, nil, &m, http.StatusOK)
	if i := slices.IndexFunc(m.Environments, func(r stackStatusRow) bool { return r.Env == a.env }); i < 0 ||
		m.Environments[i].Status != stackDeploying || m.Environments[i].Message != "1 of 2 replicas available" || m.Environments[i].Error != "" {
		t.Fatalf("deploying: %+v", m)
	}
	a.pull(s, nil, []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusRunning}}, nil)
	b.pull(s, nil, []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusFailed, Error: "web: exited 1"}}, nil)
	m = statusMatrix{}
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), reader, nil, &m, http.StatusOK)
	if i := slices.IndexFunc(m.Environments, func(r stackStatusRow) bool { return r.Env == a.env }); i < 0 || m.Environments[i].Message != "" {
		t.Fatalf("running keeps the deploying message: %+v", m)
	}
	if m.of(a.env) != stackRunning || m.of(b.env) != stackError || m.Summary[stackRunning] != 1 || m.Summary[stackError] != 1 {
		t.Fatalf("after reports: %+v", m)
	}

	// The password is nowhere in clear: not in the API, the command log,
	// the audit log, or the store file.
	for _, path := range []string{"/api/edge-stacks", fmt.Sprintf("/api/edge-stacks/%d", st.ID), fmt.Sprintf("/api/environments/%d/commands", a.env), "/api/audit"} {
		if _, body := call(t, hs, "GET", path, tok, nil); bytes.Contains(body, []byte(password)) {
			t.Errorf("%s shows the registry password", path)
		}
	}
	dbPath := s.store.Path()
	if err := s.store.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(password)) {
		t.Error("the store file holds the registry password in clear")
	}
	reopened, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	s.store = reopened
	t.Cleanup(func() { _ = reopened.Close() })

	// A second stack with the same content: its content is not sent again.
	var twin stackView
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "twin", "composeFile": testCompose, "env": map[string]string{"GREETING": "hi"}, "edgeGroupIds": []uint64{g.ID},
	}, &twin, http.StatusCreated)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans := a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Args["project"] != "twin" || len(ans.Blobs) != 0 || len(ans.Commands[0].Secret) != 0 {
		t.Fatalf("twin deploy: %d commands, %d blobs", len(ans.Commands), len(ans.Blobs))
	}
	a.pull(s, okAcks(ans.Commands), nil, nil)

	// An update bumps the version; a stale report about version 1 is ignored.
	apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-stacks/%d", st.ID), tok, map[string]any{"composeFile": strings.Replace(testCompose, "3600", "7200", 1)}, &st, http.StatusOK)
	if st.Version != 2 {
		t.Fatalf("update: version %d", st.Version)
	}
	apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-stacks/%d", st.ID), tok, map[string]any{"name": "renamed"}, nil, http.StatusBadRequest)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans = a.pull(s, nil, []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusRunning}}, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Args["version"] != "2" || len(ans.Blobs) != 1 {
		t.Fatalf("update deploy: %+v", ans)
	}
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), reader, nil, &m, http.StatusOK)
	if m.of(a.env) != stackPending || m.Version != 2 {
		t.Fatalf("a stale report moved the status: %+v", m)
	}
	a.pull(s, okAcks(ans.Commands), []protocol.StackStatus{{StackID: st.ID, Version: 2, Status: protocol.StatusRunning}}, nil)

	// b leaves the group: the stack is removed there, and only there.
	apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-groups/%d", g.ID), tok, map[string]any{"name": "shops", "environmentIds": []uint64{a.env}}, nil, http.StatusOK)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans = b.pull(s, nil, nil, nil)
	var removes []protocol.Command
	for _, c := range ans.Commands {
		if c.Kind == kindStackRemove {
			removes = append(removes, c)
		}
	}
	if len(removes) != 2 {
		t.Fatalf("b after leaving: %+v", ans.Commands)
	}
	if got := a.pull(s, nil, nil, nil); len(got.Commands) != 0 {
		t.Fatalf("a got commands it should not: %+v", got.Commands)
	}
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), reader, nil, &m, http.StatusOK)
	if m.of(b.env) != stackRemoving || m.of(a.env) != stackRunning {
		t.Fatalf("while removing: %+v", m)
	}
	b.pull(s, okAcks(ans.Commands), []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusRemoved}}, nil)
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), reader, nil, &m, http.StatusOK)
	if m.of(b.env) != "absent" {
		t.Fatalf("after removal: %+v", m)
	}

	// Deleting the stack removes it from a.
	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/edge-stacks/%d", st.ID), tok, nil, nil, http.StatusNoContent)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans = a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Kind != kindStackRemove || ans.Commands[0].Args["project"] != "web" {
		t.Fatalf("after delete: %+v", ans.Commands)
	}
	// The ack alone leaves it removing: only the device's report that
	// Compose took it down removes the status.
	a.pull(s, okAcks(ans.Commands), nil, nil)
	if left, _ := s.store.StackStatuses(st.ID); len(left) != 1 || left[0].Status != stackRemoving {
		t.Fatalf("after the remove's ack: %+v", left)
	}
	a.pull(s, nil, []protocol.StackStatus{{StackID: st.ID, Version: 2, Status: protocol.StatusRemoved}}, nil)
	if left, _ := s.store.StackStatuses(st.ID); len(left) != 0 {
		t.Fatalf("statuses left after removal: %+v", left)
	}
}

// A superseded command is dropped from the log before the device sees it:
// a metered link pays for the latest version only.
func TestStackUpdateSupersedesPendingDeploy(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "g", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)
	var st stackView
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{"name": "web", "composeFile": testCompose, "edgeGroupIds": []uint64{g.ID}}, &st, http.StatusCreated)
	for i := range 3 {
		if i > 0 {
			apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-stacks/%d", st.ID), tok, map[string]any{"env": map[string]string{"N": strconv.Itoa(i)}}, nil, http.StatusOK)
		}
		if err := s.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	ans := a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Args["version"] != "3" {
		t.Fatalf("want only version 3: %+v", ans.Commands)
	}
}

func TestEdgeJobLifecycle(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")

	status, body := call(t, hs, "POST", "/api/edge-jobs", tok, map[string]any{"name": "", "cron": "every minute", "script": ""})
	for _, want := range []string{"name: required", "every minute", "script: required", "at least one target"} {
		if status != http.StatusBadRequest || !strings.Contains(string(body), want) {
			t.Errorf("bad job: %d %s, want %q", status, body, want)
		}
	}
	var j jobView
	apiJSON(t, hs, "POST", "/api/edge-jobs", tok, map[string]any{
		"name": "disk", "cron": "*/5 * * * *", "script": "df -h /\n", "environmentIds": []uint64{a.env},
	}, &j, http.StatusCreated)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans := a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Kind != kindJobUpsert || ans.Commands[0].Args["cron"] != "*/5 * * * *" ||
		len(ans.Blobs) != 1 || string(ans.Blobs[0].Data) != "df -h /\n" {
		t.Fatalf("upsert: %+v", ans)
	}
	runs := []protocol.JobResult{
		{JobID: j.ID, Run: 1, Started: 1_800_000_000, Duration: 12, ExitCode: 0, Output: []byte("ok\n")},
		{JobID: j.ID, Run: 2, Started: 1_800_000_300, Duration: 9, ExitCode: 2, Output: []byte("disk full\n")},
	}
	a.pull(s, okAcks(ans.Commands), nil, runs)
	a.pull(s, nil, nil, runs) // a duplicate report changes nothing
	var res struct {
		Environments []store.JobTarget `json:"environments"`
		Runs         []store.JobRun    `json:"runs"`
	}
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-jobs/%d/results", j.ID), tok, nil, &res, http.StatusOK)
	if len(res.Environments) != 1 || res.Environments[0].Status != "scheduled" || len(res.Runs) != 2 ||
		res.Runs[0].Run != 2 || res.Runs[0].ExitCode != 2 || res.Runs[0].Output != "disk full\n" {
		t.Fatalf("results: %+v", res)
	}

	// Collect: the device is asked for the whole log; it replaces the tail.
	apiJSON(t, hs, "POST", fmt.Sprintf("/api/edge-jobs/%d/collect", j.ID), tok, nil, nil, http.StatusAccepted)
	ans = a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Kind != kindJobCollect || ans.Commands[0].Args["job"] != strconv.FormatUint(j.ID, 10) {
		t.Fatalf("collect: %+v", ans.Commands)
	}
	full := protocol.JobResult{JobID: j.ID, Run: 2, Started: 1_800_000_300, Duration: 9, ExitCode: 2, Output: []byte("line 1\ndisk full\n"), Full: true}
	a.pull(s, okAcks(ans.Commands), nil, []protocol.JobResult{full})
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-jobs/%d/results", j.ID), tok, nil, &res, http.StatusOK)
	if !res.Runs[0].Full || res.Runs[0].Output != "line 1\ndisk full\n" {
		t.Fatalf("after collect: %+v", res.Runs[0])
	}

	// Deleting the job stops it on the device; the target goes on the ack.
	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/edge-jobs/%d", j.ID), tok, nil, nil, http.StatusNoContent)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans = a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Kind != kindJobRemove {
		t.Fatalf("after delete: %+v", ans.Commands)
	}
	a.pull(s, okAcks(ans.Commands), nil, nil)
	if left, _ := s.store.JobTargets(j.ID); len(left) != 0 {
		t.Fatalf("targets left: %+v", left)
	}
}

// A script the device dropped (its job moved to another one) is sent again
// when a later version goes back to it: the server forgets it was sent when
// the device is told to drop it.
func TestJobScriptSentAgainAfterTheDeviceDroppedIt(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var j jobView
	apiJSON(t, hs, "POST", "/api/edge-jobs", tok, map[string]any{"name": "j", "cron": "@hourly", "script": "echo one\n", "environmentIds": []uint64{a.env}}, &j, http.StatusCreated)
	for i, script := range []string{"echo one\n", "echo two\n", "echo one\n"} {
		if i > 0 {
			apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-jobs/%d", j.ID), tok, map[string]any{"script": script}, nil, http.StatusOK)
		}
		if err := s.reconcile(); err != nil {
			t.Fatal(err)
		}
		ans := a.pull(s, nil, nil, nil)
		if len(ans.Commands) != 1 || len(ans.Blobs) != 1 || string(ans.Blobs[0].Data) != script {
			t.Fatalf("version %d: %d commands, blobs %+v", i+1, len(ans.Commands), ans.Blobs)
		}
		a.pull(s, okAcks(ans.Commands), nil, nil)
	}
}

// A deleted environment leaves nothing for the reconciler: no statuses, job
// targets, runs or commands, and it is off the jobs' target lists.
func TestDeletedEnvironmentLeavesNoEdgeWork(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a, b := bound(t, s, hs.Config.Handler, "a"), bound(t, s, hs.Config.Handler, "b")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "g", "environmentIds": []uint64{a.env, b.env}}, &g, http.StatusCreated)
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{"name": "web", "composeFile": testCompose, "edgeGroupIds": []uint64{g.ID}}, nil, http.StatusCreated)
	var j jobView
	apiJSON(t, hs, "POST", "/api/edge-jobs", tok, map[string]any{"name": "j", "cron": "@hourly", "script": "true\n", "environmentIds": []uint64{a.env, b.env}}, &j, http.StatusCreated)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans := a.pull(s, nil, nil, nil)
	a.pull(s, okAcks(ans.Commands), nil, []protocol.JobResult{{JobID: j.ID, Run: 1, Started: 1_800_000_000}})

	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/environments/%d", a.env), tok, nil, nil, http.StatusNoContent)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	statuses, _ := s.store.StackStatuses(0)
	targets, _ := s.store.JobTargets(0)
	runs, _ := s.store.JobRuns(j.ID, 10)
	pending, _ := s.store.PendingCommands(a.env, 10)
	job, _ := s.store.Job(j.ID)
	for _, x := range statuses {
		if x.Env == a.env {
			t.Errorf("stack status left: %+v", x)
		}
	}
	for _, x := range targets {
		if x.Env == a.env {
			t.Errorf("job target left: %+v", x)
		}
	}
	if len(runs) != 0 || len(pending) != 0 || slices.Contains(job.EnvironmentIDs, a.env) {
		t.Errorf("left: runs %+v, pending %+v, job targets %v", runs, pending, job.EnvironmentIDs)
	}
	if len(statuses) != 1 || len(targets) != 1 {
		t.Errorf("b's records went too: %+v %+v", statuses, targets)
	}
}

// No stack answer carries credentials, not even sealed ones: create, read,
// update and list.
func TestStackAnswersCarryNoCredentials(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "shops", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)
	const password = "s3cret-registry-password"
	regs := []map[string]string{{"url": "registry.example.com", "username": "bot", "password": password}}

	check := func(what string, status int, body []byte, want int) {
		t.Helper()
		if status != want {
			t.Fatalf("%s: %d %s", what, status, body)
		}
		for _, leak := range []string{"registriesSealed", password} {
			if strings.Contains(string(body), leak) {
				t.Errorf("%s answers %q: %s", what, leak, body)
			}
		}
		if !strings.Contains(string(body), "registry.example.com") {
			t.Errorf("%s does not name the registry: %s", what, body)
		}
	}
	status, body := call(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "web", "composeFile": testCompose, "edgeGroupIds": []uint64{g.ID}, "registries": regs})
	check("create", status, body, http.StatusCreated)
	var st stackView
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if stored, err := s.store.Stack(st.ID); err != nil || len(stored.Registries) == 0 {
		t.Fatalf("the store lost the sealed credentials: %v", err)
	}
	path := fmt.Sprintf("/api/edge-stacks/%d", st.ID)
	status, body = call(t, hs, "GET", path, tok, nil)
	check("read", status, body, http.StatusOK)
	status, body = call(t, hs, "PUT", path, tok, map[string]any{"registries": regs})
	check("update", status, body, http.StatusOK)
	status, body = call(t, hs, "GET", "/api/edge-stacks", tok, nil)
	check("list", status, body, http.StatusOK)
}

func TestStackComposeProblemsAllAtOnceWithLines(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "shops", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)
	bad := "services:\n  web:\n    image: busybox\n    bogus: 1\n  db:\n    image: 3\n    colour: blue\n"
	want := []string{
		"composeFile: line 4: services.web.bogus: not allowed here",
		"composeFile: line 6: services.db.image must be a string",
		"composeFile: line 7: services.db.colour: not allowed here",
	}
	status, body := call(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{"name": "web", "composeFile": bad, "edgeGroupIds": []uint64{g.ID}})
	for _, w := range want {
		if status != http.StatusBadRequest || !strings.Contains(string(body), w) {
			t.Errorf("create: %d %s, want %q", status, body, w)
		}
	}
	var st stackView
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{"name": "web", "composeFile": testCompose, "edgeGroupIds": []uint64{g.ID}}, &st, http.StatusCreated)
	status, body = call(t, hs, "PUT", fmt.Sprintf("/api/edge-stacks/%d", st.ID), tok, map[string]any{"composeFile": bad})
	for _, w := range want {
		if status != http.StatusBadRequest || !strings.Contains(string(body), w) {
			t.Errorf("update: %d %s, want %q", status, body, w)
		}
	}
}
