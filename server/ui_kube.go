package server

import (
	"errors"
	"fmt"

	"outpost/kube"
	"outpost/server/store"
	"outpost/web"
)

func (b uiBackend) KubeScope(user string, env uint64) (string, []string, error) {
	_, g, err := b.s.kubeCaller(env, session{user: user})
	return g.Role, g.Namespaces, err
}

func (b uiBackend) NamespaceAccess(env uint64) (web.NamespaceAccess, error) {
	out := web.NamespaceAccess{Assigned: map[string]web.Assignees{}}
	all, err := b.s.store.NamespacesAccess(env)
	if err != nil {
		return out, err
	}
	for ns, a := range all {
		out.Assigned[ns] = web.Assignees{Users: a.UserIDs, Teams: a.TeamIDs}
	}
	users, err := b.s.store.Users()
	if err != nil {
		return out, err
	}
	for _, u := range users {
		// Only the roles whose scope is their assigned namespaces are
		// assigned any; the others reach every namespace their role does.
		if kube.RoleScope(kubeRole(u.Role)) == kube.ScopeAssigned {
			out.Users = append(out.Users, web.Option{ID: u.ID, Name: u.Username})
		}
	}
	teams, err := b.s.store.Teams()
	if err != nil {
		return out, err
	}
	for _, t := range teams {
		out.Teams = append(out.Teams, web.Option{ID: t.ID, Name: t.Name})
	}
	return out, nil
}

func (b uiBackend) SetNamespaceAccess(user string, env uint64, ns string, users, teams []uint64) error {
	e, err := b.s.store.Environment(env)
	if err != nil {
		return uiErr(err)
	}
	if !isKube(e) {
		return fmt.Errorf("environment %d is not a Kubernetes cluster: it has no namespaces: %w", env, web.ErrInvalid)
	}
	err = b.s.setNamespaceAccess(nil, session{user: user}, env, ns, store.NamespaceAccess{UserIDs: users, TeamIDs: teams})
	var missing *store.MissingAssigneesError
	if errors.As(err, &missing) || errors.Is(err, errNotAssignable) {
		return fmt.Errorf("%v: %w", err, web.ErrInvalid)
	}
	return err
}
