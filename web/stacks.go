package web

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stackStatusOrder is the order a stack's statuses are drawn, counted and
// listed in: done first, then work in progress from nearest to done, then
// trouble, then environments leaving the stack.
var stackStatusOrder = []string{"running", "deploying", "acknowledged", "pending", "error", "removing"}

// stackCounts puts counts by status in stackStatusOrder, leaving out zeros.
// A status the UI does not know yet goes last rather than being dropped.
func stackCounts(by map[string]int) []stateCount {
	var out []stateCount
	for _, s := range stackStatusOrder {
		if by[s] > 0 {
			out = append(out, stateCount{State: s, N: by[s]})
		}
	}
	var other []stateCount
	for s, n := range by {
		if n > 0 && !slices.Contains(stackStatusOrder, s) {
			other = append(other, stateCount{State: s, N: n})
		}
	}
	slices.SortFunc(other, func(a, b stateCount) int { return cmp.Compare(a.State, b.State) })
	return append(out, other...)
}

// stackRow is a stack as the list and its own page show it.
type stackRow struct {
	ID                    uint64
	Name                  string
	Version               uint64
	Groups                int
	Updated, UpdatedTitle string
	Total                 int
	Counts                []stateCount
	Bar                   chart
	Summary               string // "5 environments: 3 running, 1 error"
}

func newStackRow(st Stack, by map[string]int, now time.Time) stackRow {
	r := stackRow{ID: st.ID, Name: st.Name, Version: st.Version, Groups: len(st.EdgeGroups),
		Updated: ago(st.Updated, now), UpdatedTitle: absTime(st.Updated), Counts: stackCounts(by)}
	var parts []string
	for _, c := range r.Counts {
		r.Total += c.N
		parts = append(parts, fmt.Sprintf("%d %s", c.N, c.State))
	}
	r.Bar = splitBar(r.Counts, "ss-")
	r.Summary = plural(r.Total, "environment", "environments")
	if len(parts) > 0 {
		r.Summary += ": " + strings.Join(parts, ", ")
	}
	return r
}

type stackListPage struct {
	base
	Rows     []stackRow
	Statuses []string // the legend
	Host     string   // for the empty state's example
}

func (h *handler) handleStacks(w http.ResponseWriter, r *http.Request, user string) {
	stacks, err := h.b.Stacks()
	if err != nil {
		h.internalError(w, r, user, "read the edge stacks", err)
		return
	}
	p := stackListPage{base: h.base("Edge stacks", user, "stacks"), Statuses: stackStatusOrder, Host: r.Host}
	now := h.now()
	for _, st := range stacks {
		p.Rows = append(p.Rows, newStackRow(st, st.Statuses, now))
	}
	slices.SortFunc(p.Rows, func(a, b stackRow) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.ID, b.ID))
	})
	h.render(w, http.StatusOK, "stacks", p)
}

// targetRow is one environment's line of a stack's page.
type targetRow struct {
	EnvID                 uint64
	EnvName               string // empty when the environment is gone
	Version               uint64
	Behind                bool // to run an older version than the stack's
	Status                string
	Error                 string
	Message               string // a deploy's progress
	Remove                bool
	Updated, UpdatedTitle string
}

type stackPage struct {
	base
	Stack                 stackRow
	EdgeGroups            []string
	Registries            []string
	Created, CreatedTitle string
	By                    string
	Targets               []targetRow // errors first, then by name
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (h *handler) handleStack(w http.ResponseWriter, r *http.Request, user string) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		h.renderErrorBack(w, user, http.StatusNotFound, "Edge stack not found",
			fmt.Sprintf("%q is not an edge stack ID. Pick one from the list.", r.PathValue("id")), "/stacks", "the edge stacks")
		return
	}
	st, targets, err := h.b.Stack(id)
	if errors.Is(err, ErrNotFound) {
		h.renderErrorBack(w, user, http.StatusNotFound, "Edge stack not found",
			fmt.Sprintf("There is no edge stack %d. It may have been deleted; pick one from the list.", id), "/stacks", "the edge stacks")
		return
	} else if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("read edge stack %d", id), err)
		return
	}
	now := h.now()
	// The page counts what it lists, so the bar and the table agree.
	by := map[string]int{}
	p := stackPage{base: h.base(st.Name, user, "stacks"), EdgeGroups: st.EdgeGroups, Registries: st.Registries,
		Created: ago(st.Created, now), CreatedTitle: absTime(st.Created), By: st.By}
	for _, t := range targets {
		by[t.Status]++
		p.Targets = append(p.Targets, targetRow{
			EnvID: t.EnvID, EnvName: t.EnvName, Version: t.Version, Behind: !t.Remove && t.Version < st.Version,
			Status: t.Status, Error: t.Error, Message: t.Message, Remove: t.Remove,
			Updated: ago(t.Updated, now), UpdatedTitle: absTime(t.Updated),
		})
	}
	// Errors first, then by name; environments that no longer exist last.
	slices.SortFunc(p.Targets, func(a, b targetRow) int {
		return cmp.Or(
			-cmp.Compare(btoi(a.Status == "error"), btoi(b.Status == "error")),
			cmp.Compare(btoi(a.EnvName == ""), btoi(b.EnvName == "")),
			cmp.Compare(strings.ToLower(a.EnvName), strings.ToLower(b.EnvName)),
			cmp.Compare(a.EnvID, b.EnvID))
	})
	p.Stack = newStackRow(st, by, now)
	h.render(w, http.StatusOK, "stack", p)
}
