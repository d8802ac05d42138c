package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"outpost/kube"
	"outpost/server/store"
	"outpost/snapshot"
)

// kindKubeAccess carries the grants of every user who works with a
// cluster (args: environment, grants as JSON); the agent makes the cluster
// hold exactly those service accounts and bindings (kube.Access.Sync).
const kindKubeAccess = "kube.access"

// auditNamespaceAccess: who is assigned a namespace of a cluster changed.
const auditNamespaceAccess = "kubernetes.namespace-access"

// kubeRole is the environment role an Outpost role holds in every cluster:
// the administrator is its environment administrator.
func kubeRole(role string) string {
	if role == RoleAdmin {
		return kube.EnvAdmin
	}
	return role
}

// isKube reports whether e is a Kubernetes environment: its agent says so,
// or it was created for one and no agent said otherwise yet.
func isKube(e *store.Environment) bool {
	if e.Agent != nil && e.Agent.Platform != "" {
		return e.Agent.Platform == kube.PlatformKubernetes
	}
	return e.Platform == kube.PlatformKubernetes
}

// kubeAssignments is who is assigned which namespaces of one cluster, and
// the teams, read once for every user it is asked about.
type kubeAssignments struct {
	env    uint64
	access map[string]store.NamespaceAccess
	teams  []store.Team
}

func (s *Server) kubeAssignments(env uint64) (kubeAssignments, error) {
	access, err := s.store.NamespacesAccess(env)
	if err != nil {
		return kubeAssignments{}, err
	}
	teams, err := s.store.Teams()
	return kubeAssignments{env: env, access: access, teams: teams}, err
}

// grant is u's access to the cluster: their role there and, for the roles
// whose scope is assigned, the namespaces assigned to them or one of their
// teams, sorted.
func (k kubeAssignments) grant(u *store.User) kube.Grant {
	g := kube.Grant{Env: k.env, User: u.ID, Role: kubeRole(u.Role)}
	if kube.RoleScope(g.Role) != kube.ScopeAssigned {
		return g
	}
	var mine []uint64
	for _, t := range k.teams {
		if slices.Contains(t.Members, u.ID) {
			mine = append(mine, t.ID)
		}
	}
	for ns, a := range k.access {
		if slices.Contains(a.UserIDs, u.ID) || slices.ContainsFunc(a.TeamIDs, func(t uint64) bool { return slices.Contains(mine, t) }) {
			g.Namespaces = append(g.Namespaces, ns)
		}
	}
	slices.Sort(g.Namespaces)
	return g
}

// kubeCaller is the user behind ss, with their role and namespaces in env.
func (s *Server) kubeCaller(env uint64, ss session) (*store.User, kube.Grant, error) {
	u, err := s.store.UserByName(ss.user)
	if err != nil {
		return nil, kube.Grant{}, err
	}
	k, err := s.kubeAssignments(env)
	return u, k.grant(u), err
}

// reconcileKubeAccess queues, for each Kubernetes environment whose users'
// grants changed since it was last told, a kube.access command with all of
// them; the command drops an older one still pending. Role changes, user
// deletions, team changes and namespace assignments all reach the cluster
// this way, in both agent modes.
func (s *Server) reconcileKubeAccess() error {
	// Only the clusters someone worked with: not a scan of the fleet.
	envs, err := s.store.KubeEnvironments()
	if err != nil {
		return err
	}
	for _, env := range envs {
		e, err := s.store.Environment(env)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if !e.Trusted || !isKube(e) {
			continue
		}
		users, err := s.store.KubeUsers(e.ID)
		if err != nil {
			return err
		}
		sent, retryAt, err := s.store.KubeAccessSent(e.ID)
		if err != nil {
			return err
		}
		if len(users) == 0 && sent == "" && retryAt == 0 {
			continue // nobody worked with it, and nothing was ever sent
		}
		if retryAt > s.now().Unix() {
			continue // the agent could not apply the last; not yet again
		}
		k, err := s.kubeAssignments(e.ID)
		if err != nil {
			return err
		}
		grants := []kube.Grant{}
		for _, id := range users {
			u, err := s.store.UserByID(id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			grants = append(grants, k.grant(u))
		}
		body, err := json.Marshal(grants)
		if err != nil {
			return err
		}
		hash := grantsHash(string(body))
		if sent == hash {
			continue
		}
		c := &store.Command{Env: e.ID, Kind: kindKubeAccess, Created: s.now().Unix(), By: "reconciler",
			Args: map[string]string{"environment": strconv.FormatUint(e.ID, 10), "grants": string(body)}}
		supersedes := func(old store.Command) bool { return old.Kind == kindKubeAccess && old.Status == "pending" }
		if err := s.store.QueueTargetCommand(c, supersedes, store.Target{KubeAccess: hash}); err != nil {
			return err
		}
		s.log.Info("kubernetes access queued", "env", e.ID, "users", len(grants), "command", c.ID)
	}
	return nil
}

// kubeAccessRetry is how long after a kube.access the agent could not
// apply the grants are sent again.
const kubeAccessRetry = 15 * time.Minute

// grantsHash is what KubeAccessSent records of the grants a kube.access
// command carries (its args' JSON).
func grantsHash(grants string) string {
	sum := sha256.Sum256([]byte(grants))
	return hex.EncodeToString(sum[:])
}

// kubeTokens caches the users' service account tokens per (environment,
// user), so a proxied call does not ask the agent for one each time.
type kubeTokens struct {
	mu sync.Mutex // guards m; never held across the tunnel
	m  map[[2]uint64]kubeToken
}

type kubeToken struct {
	token   string
	expires time.Time
	grant   string // the grant it was made for, as JSON: a change asks anew
}

// tokenMargin is how long before its expiry a cached token is replaced.
const tokenMargin = 2 * time.Minute

// kubeTokenFor returns a token of g's service account, asking the agent
// through the tunnel when none is cached for this grant.
func (s *Server) kubeTokenFor(ctx context.Context, rt http.RoundTripper, g kube.Grant) (string, error) {
	gj, err := json.Marshal(g)
	if err != nil {
		return "", err
	}
	key := [2]uint64{g.Env, g.User}
	t := &s.kubeTokens
	t.mu.Lock()
	cur, ok := t.m[key]
	t.mu.Unlock()
	if ok && cur.grant == string(gj) && s.now().Add(tokenMargin).Before(cur.expires) {
		return cur.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent/v2/kubernetes/token", bytes.NewReader(gj))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("through the tunnel: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token   string    `json:"token"`
		Expires time.Time `json:"expires"`
		Message string    `json:"message"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&out); err != nil {
		return "", fmt.Errorf("the agent's token answer (%s): %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || out.Token == "" {
		return "", fmt.Errorf("the agent could not make the user's token (%s): %s", resp.Status, cmp.Or(out.Message, "no token"))
	}
	t.mu.Lock()
	if t.m == nil {
		t.m = map[[2]uint64]kubeToken{}
	}
	t.m[key] = kubeToken{token: out.Token, expires: out.Expires, grant: string(gj)}
	t.mu.Unlock()
	return out.Token, nil
}

// handleKubeProxy serves /api/environments/{id}/kubernetes/{path...}: the
// cluster's API through the tunnel, as the calling user. Outpost first
// checks the request against the Access Restrictions table for the user's
// role and namespaces; then the agent makes it with a short-lived token of
// the user's own service account (the environment administrator's with
// the agent's own credentials), so the API server's RBAC judges it too.
func (s *Server) handleKubeProxy(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	if !isKube(e) {
		writeErr(w, http.StatusConflict, "environment %d is not a Kubernetes cluster: its engine is under /api/environments/%d/docker/", e.ID, e.ID)
		return
	}
	path := "/" + r.PathValue("path")
	req, err := kube.Classify(r.Method, path, r.Header.Get("Content-Type"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	if q := r.URL.Query().Get("watch"); req.Verb == "list" && (q == "true" || q == "1") {
		req.Verb = "watch"
	}
	u, g, err := s.kubeCaller(e.ID, ss)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "could not read the caller's access")
		return
	}
	if err := kube.Check(g.Role, g.Namespaces, req); err != nil {
		writeErr(w, http.StatusForbidden, "%v", err)
		return
	}
	c, ok := s.awaitTunnel(w, r, ss, e)
	if !ok {
		return
	}
	if added, err := s.store.MarkKubeUser(e.ID, u.ID, s.now().Unix()); err != nil {
		writeErr(w, http.StatusInternalServerError, "could not record the user's access")
		return
	} else if added {
		s.kickReconcile()
	}
	hdr := http.Header{}
	if g.Role == kube.EnvAdmin {
		hdr.Set(kube.HeaderAs, kube.AsAgent)
	} else {
		tok, err := s.kubeTokenFor(r.Context(), c.Transport(), g)
		if err != nil {
			writeErr(w, http.StatusBadGateway, "environment %d: %v", e.ID, err)
			return
		}
		hdr.Set(kube.HeaderToken, tok)
	}
	s.proxyThroughTunnel(w, r, e.ID, c.Transport(), "/v2/kubernetes"+path, hdr)
}

// handleNamespaceAccessList serves GET
// /api/environments/{id}/kubernetes/namespaces/access: who is assigned
// each namespace of the cluster.
func (s *Server) handleNamespaceAccessList(w http.ResponseWriter, r *http.Request, _ session) {
	e, ok := s.kubeEnvFromPath(w, r)
	if !ok {
		return
	}
	a, err := s.store.NamespacesAccess(e.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "could not read the namespace access")
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// handleNamespaceAccess serves GET and PUT
// /api/environments/{id}/kubernetes/namespaces/{ns}/access {userIds, teamIds}.
func (s *Server) handleNamespaceAccess(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.kubeEnvFromPath(w, r)
	if !ok {
		return
	}
	ns := r.PathValue("ns")
	if msgs := kube.CheckNamespaceName(ns); len(msgs) > 0 {
		writeErr(w, http.StatusBadRequest, "namespace %q: %s", ns, msgs[0])
		return
	}
	if r.Method == http.MethodPut {
		var a store.NamespaceAccess
		if !decodeJSON(w, r, &a) {
			return
		}
		if err := s.setNamespaceAccess(r, ss, e.ID, ns, a); err != nil {
			var missing *store.MissingAssigneesError
			if errors.As(err, &missing) || errors.Is(err, errNotAssignable) {
				writeErr(w, http.StatusBadRequest, "%v", err)
				return
			}
			writeErr(w, http.StatusInternalServerError, "could not store the namespace access")
			return
		}
	}
	all, err := s.store.NamespacesAccess(e.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "could not read the namespace access")
		return
	}
	writeJSON(w, http.StatusOK, accessView(all[ns]))
}

// accessView gives a's empty lists as [], not null.
func accessView(a store.NamespaceAccess) store.NamespaceAccess {
	a.UserIDs, a.TeamIDs = nonNil(a.UserIDs), nonNil(a.TeamIDs)
	return a
}

// errNotAssignable: a namespace no one is assigned (its name is none, or
// it is a system one).
var errNotAssignable = errors.New("not a namespace to assign")

// setNamespaceAccess stores who is assigned ns, audits it and sends the
// change on to the cluster (the reconciler's kube.access).
func (s *Server) setNamespaceAccess(r *http.Request, ss session, env uint64, ns string, a store.NamespaceAccess) error {
	if msgs := kube.CheckNamespaceName(ns); len(msgs) > 0 {
		return fmt.Errorf("namespace %q: %s: %w", ns, msgs[0], errNotAssignable)
	}
	if kube.System(ns) {
		return fmt.Errorf("namespace %s is a system namespace: only environment administrators reach it, and they reach it all (%w)", ns, errNotAssignable)
	}
	if err := s.store.PutNamespaceAccess(env, ns, a); err != nil {
		return err
	}
	s.audit(r, ss.user, auditNamespaceAccess, envTarget(env), fmt.Sprintf("namespace %s: users %v, teams %v", ns, a.UserIDs, a.TeamIDs))
	s.kickReconcile()
	return nil
}

// kubeEnvFromPath is envFromPath for Kubernetes environments only.
func (s *Server) kubeEnvFromPath(w http.ResponseWriter, r *http.Request) (*store.Environment, bool) {
	e, ok := s.envFromPath(w, r)
	if ok && !isKube(e) {
		writeErr(w, http.StatusConflict, "environment %d is not a Kubernetes cluster: it has no namespaces", e.ID)
		return nil, false
	}
	return e, ok
}

// kubeView cuts a Kubernetes snapshot to what the caller's role may see
// in env (the Access Restrictions table's rows and Namespace Scope).
func (s *Server) kubeView(env uint64, ss session, d *snapshot.Snapshot) error {
	_, g, err := s.kubeCaller(env, ss)
	if err != nil {
		return err
	}
	*d = kube.View(*d, g.Role, g.Namespaces)
	return nil
}
