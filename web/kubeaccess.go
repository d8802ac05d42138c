package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"outpost/kube"
)

// ActKubeAccess: assign users and teams to the namespaces of a cluster
// (the Access Restrictions table's Namespace Access Management).
const ActKubeAccess Action = "kube-access"

// KubeAccess is what the cluster pages need of who may see what.
type KubeAccess interface {
	// KubeScope returns user's role in the cluster of environment env (a
	// column of the Access Restrictions table) and the namespaces assigned
	// to them or their teams.
	KubeScope(user string, env uint64) (role string, namespaces []string, err error)
	// NamespaceAccess returns who is assigned each namespace of env, and
	// the users and teams there are to assign.
	NamespaceAccess(env uint64) (NamespaceAccess, error)
	// SetNamespaceAccess assigns namespace ns of env to users and teams,
	// as user; an error wrapping ErrInvalid says what is wrong with them.
	SetNamespaceAccess(user string, env uint64, ns string, users, teams []uint64) error
}

// NamespaceAccess is who is assigned a cluster's namespaces.
type NamespaceAccess struct {
	Assigned map[string]Assignees // namespace -> who
	Users    []Option
	Teams    []Option
}

// Assignees are the users and teams a namespace is assigned to.
type Assignees struct{ Users, Teams []uint64 }

// ErrInvalid marks an error the user made: the page says it as it is.
var ErrInvalid = errors.New("invalid")

// scoper cuts the snapshots of one environment to what one user may see of
// them, asking the backend for the user's scope once, at the first cluster
// snapshot; cut returns the user's role there too. Docker snapshots pass
// as they are.
type scoper struct {
	h     *handler
	user  string
	env   uint64
	asked bool
	role  string
	ns    []string
}

func (h *handler) scoper(user string, env uint64) *scoper { return &scoper{h: h, user: user, env: env} }

func (sc *scoper) cut(sn *Snapshot) (*Snapshot, string, error) {
	if sn == nil || sn.Docker == nil || !isKube(sn.Docker) {
		return sn, "", nil
	}
	if !sc.asked {
		role, ns, err := sc.h.b.KubeScope(sc.user, sc.env)
		if err != nil {
			return nil, "", err
		}
		sc.asked, sc.role, sc.ns = true, role, ns
	}
	cut := *sn
	v := kube.View(*sn.Docker, sc.role, sc.ns)
	cut.Docker = &v
	return &cut, sc.role, nil
}

// tabSections are the snapshot sections of the cluster tabs whose name is
// not their section's.
var tabSections = map[string]string{"config": "configMaps"}

// kubeTabAllowed reports whether role may see cluster tab id.
func kubeTabAllowed(role, id string) bool {
	sec := id
	if s, ok := tabSections[id]; ok {
		sec = s
	}
	return kube.SectionAllowed(role, sec)
}

// accessView is the Access tab of a cluster: each namespace and who is
// assigned it, with a form to change that.
type accessView struct {
	EnvID uint64
	Rows  []accessRow
	Users []Option
	Teams []Option
	Saved string // the namespace just saved
}

type accessRow struct {
	Namespace    string
	System       bool
	Users, Teams []pick
	Summary      string
}

type pick struct {
	ID      uint64
	Name    string
	Checked bool
}

func newAccessView(env uint64, namespaces []string, a NamespaceAccess) *accessView {
	v := &accessView{EnvID: env, Users: a.Users, Teams: a.Teams}
	// The names come from the device's snapshot: only real namespace
	// names become rows, since each goes into a form's URL.
	var all []string
	for _, ns := range namespaces {
		if len(kube.CheckNamespaceName(ns)) == 0 {
			all = append(all, ns)
		}
	}
	for ns := range a.Assigned {
		all = append(all, ns)
	}
	slices.Sort(all)
	for _, ns := range slices.Compact(all) {
		as := a.Assigned[ns]
		row := accessRow{Namespace: ns, System: kube.System(ns)}
		var names []string
		for _, u := range a.Users {
			on := slices.Contains(as.Users, u.ID)
			row.Users = append(row.Users, pick{u.ID, u.Name, on})
			if on {
				names = append(names, u.Name)
			}
		}
		for _, t := range a.Teams {
			on := slices.Contains(as.Teams, t.ID)
			row.Teams = append(row.Teams, pick{t.ID, t.Name, on})
			if on {
				names = append(names, "team "+t.Name)
			}
		}
		row.Summary = strings.Join(names, ", ")
		if ns == "default" {
			row.Summary = strings.TrimPrefix(row.Summary+", every standard and read-only user", ", ")
		}
		v.Rows = append(v.Rows, row)
	}
	return v
}

// handleNamespaceAccess saves who is assigned a namespace of a cluster.
func (h *handler) handleNamespaceAccess(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	back := fmt.Sprintf("/environments/%d?tab=access", env.ID)
	if !h.parseForm(w, r, user, 64<<10, back, "the access page") {
		return
	}
	ns := r.PathValue("ns")
	ids := func(name string) ([]uint64, bool) {
		var out []uint64
		for _, v := range r.PostForm[name] {
			id, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				h.renderErrorBack(w, user, http.StatusBadRequest, "Bad request", fmt.Sprintf("%s %q is not an ID.", name, v), back, "the access page")
				return nil, false
			}
			out = append(out, id)
		}
		return out, true
	}
	users, ok := ids("user")
	if !ok {
		return
	}
	teams, ok := ids("team")
	if !ok {
		return
	}
	err := h.b.SetNamespaceAccess(user, env.ID, ns, users, teams)
	if errors.Is(err, ErrInvalid) {
		h.renderErrorBack(w, user, http.StatusBadRequest, "Not saved", err.Error(), back, "the access page")
		return
	} else if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("set the access to namespace %s of environment %d", ns, env.ID), err)
		return
	}
	flash(w, fmt.Sprintf("/environments/%d", env.ID), "Access to namespace "+ns+" saved; the cluster follows at the agent's next exchange.")
	http.Redirect(w, r, back, http.StatusSeeOther)
}
