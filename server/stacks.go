package server

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"outpost/kube"
	"outpost/protocol"
	"outpost/server/store"
	"outpost/stackfile"
)

// Edge stacks: /api/edge-stacks. A stack is a compose file (and optional
// interpolation variables), or for "type": "kubernetes" YAML manifests and
// a default namespace, deployed to every environment of its edge groups;
// the reconciler (reconcile.go) turns that into stack.deploy and
// stack.remove commands. The type lives in the stack's content, not in its
// record.

// Audit actions of edge stacks.
const (
	auditStackCreate = "edge_stack.create"
	auditStackUpdate = "edge_stack.update"
	auditStackDelete = "edge_stack.delete"
)

// Bounds of a stack's content.
const (
	maxComposeFile = 256 << 10 // a compose file's, and a Kubernetes stack's manifests'
	maxStackEnv    = 256
)

// projectName is what Compose accepts as a project name.
var projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func stackTarget(id uint64) string { return "edge stack " + strconv.FormatUint(id, 10) }

// registryRequest is one registry's credentials as the API takes them. The
// password is never returned, logged, audited or stored in the clear.
type registryRequest struct {
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type stackRequest struct {
	Name string `json:"name"`
	// Type is "compose" (the default) or "kubernetes", set at creation.
	Type         string             `json:"type"`
	ComposeFile  *string            `json:"composeFile"`
	Manifests    *string            `json:"manifests"` // kubernetes
	Namespace    *string            `json:"namespace"` // kubernetes: where objects without a namespace go ("" is "default")
	Env          map[string]string  `json:"env"`
	EdgeGroupIDs *[]uint64          `json:"edgeGroupIds"`
	Registries   *[]registryRequest `json:"registries"`
}

// stackView is a stack as the API shows it: its record, its content, and
// the summary of its statuses.
type stackView struct {
	store.EdgeStack
	Type        string            `json:"type,omitempty"` // compose or kubernetes; not in lists
	ComposeFile string            `json:"composeFile,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Manifests   string            `json:"manifests,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Summary     map[string]int    `json:"summary,omitempty"`
}

// newStackView is the view of st without its credentials: not even sealed
// ones leave the server. c is its content, nil in lists.
func newStackView(st store.EdgeStack, c *protocol.StackContent) stackView {
	st.Registries = nil
	v := stackView{EdgeStack: st}
	if c != nil {
		v.Type = stackType(c)
		v.ComposeFile, v.Env = string(c.Compose), c.Env
		v.Manifests, v.Namespace = string(c.Manifests), c.Namespace
	}
	return v
}

// stackType is the content's type as the API names it.
func stackType(c *protocol.StackContent) string {
	if c.Type == "" {
		return protocol.StackCompose
	}
	return c.Type
}

// stackContent encodes a stack's content blob and returns it with its hash.
// A compose stack's type stays empty, so its blob is what it was before
// stacks had types.
func stackContent(c *protocol.StackContent) ([]byte, string, error) {
	if c.Type == protocol.StackCompose {
		c.Type = ""
	}
	b, err := protocol.Marshal(c)
	if err != nil {
		return nil, "", err
	}
	return b, contentHash(b), nil
}

// contentHash is the address of stored content (stack files, job scripts):
// the hex SHA-256 the blobs bucket keys it by and a command names.
func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkCompose checks the compose file as Compose will load it on the
// device, so mistakes are refused here rather than found on a thousand
// devices: one "composeFile: line N: …" problem each.
func checkCompose(name, compose string, env map[string]string) []string {
	var problems []string
	for _, p := range stackfile.Check(name, compose, env) {
		problems = append(problems, "composeFile: "+p.String())
	}
	return problems
}

// mayKubeStack answers 403 and returns false when typ is a Kubernetes
// stack and the caller is not an environment administrator: the agent
// applies a stack's manifests with its own cluster-admin account, so
// whoever writes them holds the cluster (any namespace but the system
// ones, cluster-scoped objects too).
func (s *Server) mayKubeStack(w http.ResponseWriter, r *http.Request, ss session, typ string) bool {
	if typ != protocol.StackKubernetes || kubeRole(ss.role) == kube.EnvAdmin {
		return true
	}
	s.audit(r, ss.user, auditAccessDenied, r.Method+" "+r.URL.Path, "kubernetes stacks are for environment administrators")
	writeErr(w, http.StatusForbidden, "your role (%s) may not write Kubernetes stacks: the agent applies them as cluster-admin, so only environment administrators do", ss.role)
	return false
}

// checkManifests checks a Kubernetes stack's documents and default
// namespace: one "manifests: line N: …" problem each (the namespace's own
// comes as "namespace …").
func checkManifests(manifests, namespace string) []string {
	var problems []string
	for _, p := range stackfile.CheckManifestsOutside(manifests, namespace, kube.System) {
		if p.Line == 0 && strings.HasPrefix(p.Message, "namespace ") {
			problems = append(problems, p.Message)
			continue
		}
		problems = append(problems, "manifests: "+p.String())
	}
	return problems
}

// validateStack checks a create (old nil) or update request and returns
// every problem at once. oldType is the type of old's content.
func (s *Server) validateStack(req *stackRequest, old *store.EdgeStack, oldType string) []string {
	var problems []string
	name := req.Name
	typ := cmp.Or(req.Type, protocol.StackCompose)
	if old != nil {
		if req.Name != "" && req.Name != old.Name {
			problems = append(problems, "name: a stack's name is its compose project on every device and cannot change; create a new stack instead")
		}
		if req.Type != "" && req.Type != oldType {
			problems = append(problems, fmt.Sprintf("type: this stack is of type %s, and a stack's type cannot change; create a new stack instead", oldType))
		}
		name, typ = old.Name, oldType
	} else if !projectName.MatchString(name) {
		problems = append(problems, fmt.Sprintf("name %q: lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters (it is the compose project name)", name))
	}
	switch typ {
	case protocol.StackCompose:
		if req.Manifests != nil || req.Namespace != nil {
			problems = append(problems, `manifests, namespace: a compose stack has a composeFile; for Kubernetes manifests, create a stack of "type": "kubernetes"`)
		}
	case protocol.StackKubernetes:
		return append(problems, s.validateKubeStack(req, old, name)...)
	default:
		return append(problems, fmt.Sprintf("type %q: compose or kubernetes", req.Type))
	}
	if old == nil && req.ComposeFile == nil {
		problems = append(problems, "composeFile: required")
	}
	if req.ComposeFile != nil && len(*req.ComposeFile) > maxComposeFile {
		problems = append(problems, fmt.Sprintf("composeFile: %d bytes, at most %d", len(*req.ComposeFile), maxComposeFile))
	} else if req.ComposeFile != nil && old == nil {
		// An update is checked with the variables it will run with, once
		// the handler has merged them (handleUpdateStack).
		problems = append(problems, checkCompose(cmpName(name), *req.ComposeFile, req.Env)...)
	}
	if len(req.Env) > maxStackEnv {
		problems = append(problems, fmt.Sprintf("env: %d variables, at most %d", len(req.Env), maxStackEnv))
	}
	for k := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00 ") {
			problems = append(problems, fmt.Sprintf("env: variable name %q: no '=', space or NUL", k))
		}
	}
	problems = append(problems, s.validateStackTargets(req, old)...)
	slices.Sort(problems)
	return problems
}

// validateKubeStack checks a Kubernetes stack's request: manifests and
// namespace instead of a compose file, variables and registries.
func (s *Server) validateKubeStack(req *stackRequest, old *store.EdgeStack, name string) []string {
	var problems []string
	if old == nil && projectName.MatchString(name) && !isAlnum(name[len(name)-1]) {
		problems = append(problems, fmt.Sprintf("name %q: a kubernetes stack's name labels its objects (outpost.io/stack): end it with a letter or digit", name))
	}
	if req.ComposeFile != nil {
		problems = append(problems, "composeFile: a kubernetes stack has manifests, not a compose file")
	}
	if req.Env != nil {
		problems = append(problems, "env: a kubernetes stack has no variables: put them in a ConfigMap of its manifests")
	}
	if req.Registries != nil {
		problems = append(problems, "registries: a kubernetes stack pulls with the imagePullSecrets its manifests name")
	}
	switch {
	case old == nil && req.Manifests == nil:
		problems = append(problems, "manifests: required")
	case req.Manifests != nil && len(*req.Manifests) > maxComposeFile:
		problems = append(problems, fmt.Sprintf("manifests: %d bytes, at most %d", len(*req.Manifests), maxComposeFile))
	case old == nil:
		// An update is checked as it will run, manifests and namespace
		// merged with the stack's (handleUpdateStack).
		problems = append(problems, checkManifests(*req.Manifests, text(req.Namespace))...)
	}
	problems = append(problems, s.validateStackTargets(req, old)...)
	slices.Sort(problems)
	return problems
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// text is *p, or "" for nil.
func text(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// validateStackTargets checks what every stack type has: its edge groups
// and registries.
func (s *Server) validateStackTargets(req *stackRequest, old *store.EdgeStack) []string {
	var problems []string
	if old == nil && (req.EdgeGroupIDs == nil || len(*req.EdgeGroupIDs) == 0) {
		problems = append(problems, "edgeGroupIds: at least one edge group")
	}
	if req.EdgeGroupIDs != nil {
		f := s.fleetIndex()
		f.mu.RLock()
		problems = append(problems, unknownIDs("edgeGroupIds", "edge group", *req.EdgeGroupIDs, f.edgeGroups)...)
		f.mu.RUnlock()
	}
	if req.Registries != nil {
		for i, r := range *req.Registries {
			if r.URL == "" || strings.ContainsAny(r.URL, " \t\n") || strings.Contains(r.URL, "://") {
				problems = append(problems, fmt.Sprintf("registries[%d].url %q: a registry host such as registry.example.com:5000", i, r.URL))
			}
			if r.Username == "" || r.Password == "" {
				problems = append(problems, fmt.Sprintf("registries[%d]: username and password required", i))
			}
			if p := plainText(fmt.Sprintf("registries[%d].url", i), r.URL) + plainText(fmt.Sprintf("registries[%d].username", i), r.Username); p != "" {
				problems = append(problems, p)
			}
		}
	}
	return problems
}

// cmpName is the project name the compose loader checks: the stack's name,
// or a placeholder when the name itself is the problem.
func cmpName(name string) string {
	if projectName.MatchString(name) {
		return name
	}
	return "stack"
}

// sealRegistries seals the credentials for the store.
func (s *Server) sealRegistries(rs []registryRequest) ([]byte, []string, error) {
	if len(rs) == 0 {
		return nil, nil, nil
	}
	auths := make([]protocol.RegistryAuth, 0, len(rs))
	names := make([]string, 0, len(rs))
	for _, r := range rs {
		auths = append(auths, protocol.RegistryAuth{Server: r.URL, Username: r.Username, Password: r.Password})
		names = append(names, r.URL)
	}
	plain, err := protocol.Marshal(auths)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := s.vault.seal(plain)
	return sealed, names, err
}

func (s *Server) handleCreateStack(w http.ResponseWriter, r *http.Request, ss session) {
	var req stackRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if !s.mayKubeStack(w, r, ss, req.Type) {
		return
	}
	if refuse(w, s.validateStack(&req, nil, "")) {
		return
	}
	if existing, err := s.store.Stacks(); err == nil {
		for _, st := range existing {
			if st.Name == req.Name {
				writeErr(w, http.StatusConflict, "an edge stack named %q exists (id %d)", req.Name, st.ID)
				return
			}
		}
	}
	c := &protocol.StackContent{Compose: []byte(text(req.ComposeFile)), Env: req.Env}
	if req.Type == protocol.StackKubernetes {
		c = &protocol.StackContent{Type: req.Type, Manifests: []byte(*req.Manifests), Namespace: text(req.Namespace)}
	}
	content, hash, err := stackContent(c)
	if err != nil {
		s.writeFailed(w, err, "create", "edge stack", 0)
		return
	}
	st := &store.EdgeStack{Name: req.Name, Hash: hash, EdgeGroupIDs: sortedIDs(*req.EdgeGroupIDs), Created: s.now().Unix(), By: ss.user}
	st.Updated = st.Created
	if req.Registries != nil {
		if st.Registries, st.RegistryNames, err = s.sealRegistries(*req.Registries); err != nil {
			s.writeFailed(w, err, "create", "edge stack", 0)
			return
		}
	}
	if s.writeFailed(w, s.store.CreateStack(st, content), "create", "edge stack", 0) {
		return
	}
	s.audit(r, ss.user, auditStackCreate, stackTarget(st.ID), fmt.Sprintf("name %q, type %s, edge groups %v, content %s", st.Name, stackType(c), st.EdgeGroupIDs, st.Hash[:12]))
	s.kickReconcile()
	writeJSON(w, http.StatusCreated, newStackView(*st, c))
}

func (s *Server) handleUpdateStack(w http.ResponseWriter, r *http.Request, ss session) {
	var req stackRequest
	id, ok := idAndBody(w, r, "edge stack", &req)
	if !ok {
		return
	}
	old, err := s.store.Stack(id)
	if s.writeFailed(w, err, "update", "edge stack", id) {
		return
	}
	cur, err := s.stackContentOf(old)
	if s.writeFailed(w, err, "update", "edge stack", id) {
		return
	}
	if !s.mayKubeStack(w, r, ss, stackType(cur)) {
		return
	}
	problems := s.validateStack(&req, old, stackType(cur))
	// The new content: the request's fields over the stack's, checked as
	// a whole when any changed, its problems with the request's.
	c := *cur
	if req.ComposeFile != nil {
		c.Compose = []byte(*req.ComposeFile)
	}
	if req.Env != nil {
		c.Env = req.Env
	}
	if req.Manifests != nil {
		c.Manifests = []byte(*req.Manifests)
	}
	if req.Namespace != nil {
		c.Namespace = *req.Namespace
	}
	switch {
	case len(c.Compose) > maxComposeFile || len(c.Manifests) > maxComposeFile:
		// too large: said already, not parsed
	case c.Type == protocol.StackKubernetes && (req.Manifests != nil || req.Namespace != nil):
		problems = append(problems, checkManifests(string(c.Manifests), c.Namespace)...)
	case c.Type == "" && (req.ComposeFile != nil || req.Env != nil) && req.Manifests == nil && req.Namespace == nil:
		problems = append(problems, checkCompose(old.Name, string(c.Compose), c.Env)...)
	}
	slices.Sort(problems)
	if refuse(w, problems) {
		return
	}
	content, hash, err := stackContent(&c)
	if s.writeFailed(w, err, "update", "edge stack", id) {
		return
	}
	var sealed []byte
	var names []string
	if req.Registries != nil {
		if sealed, names, err = s.sealRegistries(*req.Registries); s.writeFailed(w, err, "update", "edge stack", id) {
			return
		}
	}
	var changes []string
	st, err := s.store.UpdateStack(id, content, func(st *store.EdgeStack) error {
		bump := false
		if st.Hash != hash {
			changes = append(changes, fmt.Sprintf("content %s -> %s", st.Hash[:12], hash[:12]))
			st.Hash, bump = hash, true
		}
		if req.Registries != nil {
			changes = append(changes, fmt.Sprintf("registries %v", names))
			st.Registries, st.RegistryNames, bump = sealed, names, true
		}
		if req.EdgeGroupIDs != nil && !slices.Equal(st.EdgeGroupIDs, sortedIDs(*req.EdgeGroupIDs)) {
			changes = append(changes, fmt.Sprintf("edge groups %v -> %v", st.EdgeGroupIDs, sortedIDs(*req.EdgeGroupIDs)))
			st.EdgeGroupIDs = sortedIDs(*req.EdgeGroupIDs)
		}
		if bump {
			st.Version++
		}
		st.Updated = s.now().Unix()
		return nil
	})
	if s.writeFailed(w, err, "update", "edge stack", id) {
		return
	}
	s.audit(r, ss.user, auditStackUpdate, stackTarget(id), fmt.Sprintf("version %d: %s", st.Version, strings.Join(changes, ", ")))
	s.kickReconcile()
	writeJSON(w, http.StatusOK, newStackView(*st, &c))
}

func (s *Server) handleDeleteStack(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "edge stack")
	if !ok {
		return
	}
	if old, err := s.store.Stack(id); err == nil {
		if cur, err := s.stackContentOf(old); err == nil && !s.mayKubeStack(w, r, ss, stackType(cur)) {
			return
		}
	}
	if s.writeFailed(w, s.store.DeleteStack(id), "delete", "edge stack", id) {
		return
	}
	s.audit(r, ss.user, auditStackDelete, stackTarget(id), "removed from every environment")
	s.kickReconcile()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) stackContentOf(st *store.EdgeStack) (*protocol.StackContent, error) {
	b, err := s.store.Blob(st.Hash)
	if err != nil {
		return nil, fmt.Errorf("stack %d content %s: %w", st.ID, st.Hash, err)
	}
	var c protocol.StackContent
	if err := protocol.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("stack %d content %s: %w", st.ID, st.Hash, err)
	}
	return &c, nil
}

func (s *Server) handleListStacks(w http.ResponseWriter, _ *http.Request, _ session) {
	stacks, err := s.store.Stacks()
	if err == nil {
		var statuses []store.StackStatus
		if statuses, err = s.store.StackStatuses(0); err == nil {
			byStack := map[uint64][]store.StackStatus{}
			for _, x := range statuses {
				byStack[x.Stack] = append(byStack[x.Stack], x)
			}
			out := make([]stackView, 0, len(stacks))
			for i := range stacks {
				sum := map[string]int{}
				for _, x := range s.stackMatrix(&stacks[i], byStack[stacks[i].ID]) {
					sum[x.Status]++
				}
				v := newStackView(stacks[i], nil)
				v.Summary = sum
				out = append(out, v)
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	s.log.Error("list edge stacks", "err", err)
	writeErr(w, http.StatusInternalServerError, "could not read the edge stacks")
}

func (s *Server) handleGetStack(w http.ResponseWriter, r *http.Request, _ session) {
	id, ok := idFromPath(w, r, "edge stack")
	if !ok {
		return
	}
	st, err := s.store.Stack(id)
	if s.writeFailed(w, err, "read", "edge stack", id) {
		return
	}
	c, err := s.stackContentOf(st)
	if s.writeFailed(w, err, "read", "edge stack", id) {
		return
	}
	writeJSON(w, http.StatusOK, newStackView(*st, c))
}

// stackStatusRow is one environment's line of a stack's status matrix.
type stackStatusRow struct {
	store.StackStatus
	Name string `json:"environmentName"`
}

// handleStackStatus serves GET /api/edge-stacks/{id}/status: the status of
// the stack on each environment it targets or is being removed from, and a
// summary by status.
func (s *Server) handleStackStatus(w http.ResponseWriter, r *http.Request, _ session) {
	id, ok := idFromPath(w, r, "edge stack")
	if !ok {
		return
	}
	st, err := s.store.Stack(id)
	if s.writeFailed(w, err, "read", "edge stack", id) {
		return
	}
	statuses, err := s.store.StackStatuses(id)
	if s.writeFailed(w, err, "read", "edge stack status", id) {
		return
	}
	summary := map[string]int{}
	rows := []stackStatusRow{}
	f := s.fleetIndex()
	f.mu.RLock()
	for _, x := range s.stackMatrix(st, statuses) {
		summary[x.Status]++
		row := stackStatusRow{StackStatus: x}
		if e := f.envs[x.Env]; e != nil {
			row.Name = e.name
		}
		rows = append(rows, row)
	}
	f.mu.RUnlock()
	slices.SortFunc(rows, func(a, b stackStatusRow) int { return cmp.Compare(a.Env, b.Env) })
	writeJSON(w, http.StatusOK, map[string]any{"stackId": id, "version": st.Version, "summary": summary, "environments": rows})
}

// stackMatrix is st's state on each environment: the stored statuses, and
// the targets the reconciler has not reached yet as pending. The API's
// status matrix, its list summaries and the UI all count this way.
func (s *Server) stackMatrix(st *store.EdgeStack, statuses []store.StackStatus) []store.StackStatus {
	out := slices.Clone(statuses)
	have := map[uint64]bool{}
	for _, x := range statuses {
		have[x.Env] = true
	}
	for _, env := range s.stackTargets(st) {
		if !have[env] {
			out = append(out, store.StackStatus{Stack: st.ID, Env: env, Version: st.Version, Status: stackPending})
		}
	}
	return out
}

// stackTargets returns the trusted environments of st's edge groups, by ID.
func (s *Server) stackTargets(st *store.EdgeStack) []uint64 {
	return s.targets(nil, st.EdgeGroupIDs)
}

// targets returns the trusted environments among envIDs and the members of
// groupIDs, by ID, without duplicates.
func (s *Server) targets(envIDs, groupIDs []uint64) []uint64 {
	out := slices.Clone(envIDs)
	for _, g := range groupIDs {
		out = append(out, s.edgeGroupMembers(g)...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	f := s.fleetIndex()
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.DeleteFunc(out, func(id uint64) bool {
		e := f.envs[id]
		return e == nil || !e.trusted
	})
}

// registryAuths opens a stack's sealed credentials.
func (s *Server) registryAuths(st *store.EdgeStack) ([]byte, error) {
	if len(st.Registries) == 0 {
		return nil, nil
	}
	return s.vault.open(st.Registries)
}
