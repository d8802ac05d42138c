package server

import "slices"

// Roles, as stored in store.User.Role. Each maps to a row of Portainer's
// Kubernetes role table (shared/seeds/001, "Role Allocations" and "Portainer
// Access Restrictions"), which is where the names come from:
//
//	role                      | Kubernetes binding (seed doc)              | Outpost
//	--------------------------+--------------------------------------------+-----------------------------------------
//	administrator             | Admin (CE): no restriction                 | everything, users and audit included
//	environment-administrator | cluster-admin                              | read and act on every environment, settings
//	operator                  | portainer-view + portainer-operator (all   | read and act on every environment
//	                          | non-system namespaces: pod delete, console)|
//	helpdesk                  | portainer-view + portainer-helpdesk        | read every environment
//	standard-user             | portainer-edit + portainer-view, assigned  | read every environment (write on assigned
//	                          | namespaces only                            | environments arrives with assignments)
//	read-only-user            | portainer-view, assigned namespaces only   | read every environment
//
// Outpost has no per-environment assignment yet, so the standard user's
// "edit what is assigned to you" is empty and it reads like helpdesk.
const (
	RoleAdmin    = "administrator"
	RoleEnvAdmin = "environment-administrator"
	RoleOperator = "operator"
	RoleHelpdesk = "helpdesk"
	RoleStandard = "standard-user"
	RoleReadOnly = "read-only-user"
)

// Roles lists every role, most powerful first.
var Roles = []string{RoleAdmin, RoleEnvAdmin, RoleOperator, RoleHelpdesk, RoleStandard, RoleReadOnly}

// permission is what a route requires of the caller's role.
type permission string

const (
	// permPublic routes are outside the role check: no token is looked at.
	// Only the edge endpoints, /healthz, /metrics, the UI (which has its own
	// session check), login and first-start setup may use it.
	permPublic permission = "public"
	// permAccount: any logged-in user, on their own account (the handler
	// checks that the account is the caller's unless they manage users).
	permAccount permission = "account"
	// permEnvRead: list and read environments, snapshots, history, waiting
	// room, groups, tags, stacks, jobs and settings.
	permEnvRead permission = "environments:read"
	// permEnvWrite: create, change and delete environments; act on them
	// (commands, tunnel, live Docker); trust or reject devices; groups,
	// tags, edge stacks and jobs.
	permEnvWrite permission = "environments:write"
	// permSettingsWrite: change server-wide settings (default frequencies,
	// waiting-room rules).
	permSettingsWrite permission = "settings:write"
	// permKubeAccess: assign users and teams to the namespaces of a
	// Kubernetes environment (the Access Restrictions table's "Namespace
	// Access Management": environment administrators only).
	permKubeAccess permission = "kubernetes:access"
	// permUsersManage: create, change and delete users and teams.
	permUsersManage permission = "users:manage"
	// permAuditRead: read the audit log.
	permAuditRead permission = "audit:read"
	// permBackup: download a backup of the store.
	permBackup permission = "backup"
)

// grants is the permission matrix, the one place that says which role may
// do what. Read-only and helpdesk read; operator and environment
// administrator act on environments; administrators do everything.
var grants = map[permission][]string{
	permAccount:       Roles,
	permEnvRead:       Roles,
	permEnvWrite:      {RoleAdmin, RoleEnvAdmin, RoleOperator},
	permSettingsWrite: {RoleAdmin, RoleEnvAdmin},
	permKubeAccess:    {RoleAdmin, RoleEnvAdmin},
	permUsersManage:   {RoleAdmin},
	permAuditRead:     {RoleAdmin},
	permBackup:        {RoleAdmin},
}

// can reports whether role holds p. Unknown roles and permissions hold
// nothing, so a typo refuses rather than allows.
func can(role string, p permission) bool {
	return slices.Contains(grants[p], role)
}

// validRole reports whether r is one of Roles.
func validRole(r string) bool { return slices.Contains(Roles, r) }
