package server

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"outpost/server/store"
)

// Steps shared by the tag, group and environment handlers: the {id} path
// value, lookups and lists of the fleet index, checks that report every
// problem at once, and the answer to a failed store write. Each handler
// still spells out its own order of locks, write, index update and audit.

// nameMax bounds tag and group names.
const nameMax = 128

// keyOf reads a tag's or group's ID and name.
type keyOf[T any] func(T) (id uint64, name string)

func tagKey(t store.Tag) (uint64, string)                   { return t.ID, t.Name }
func envGroupKey(g store.EnvironmentGroup) (uint64, string) { return g.ID, g.Name }
func edgeGroupKey(g store.EdgeGroup) (uint64, string)       { return g.ID, g.Name }

// idFromPath parses the {id} path value, answering 400 when it is not one.
func idFromPath(w http.ResponseWriter, r *http.Request, what string) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeErr(w, http.StatusBadRequest, "%s id %q: want a positive integer", what, r.PathValue("id"))
		return 0, false
	}
	return id, true
}

// idAndBody parses the {id} path value, then the JSON body into v, answering
// 400 when either will not do.
func idAndBody(w http.ResponseWriter, r *http.Request, what string, v any) (uint64, bool) {
	id, ok := idFromPath(w, r, what)
	if !ok || !decodeJSON(w, r, v) {
		return 0, false
	}
	return id, true
}

// fromPath returns the record of m named by the {id} path value, answering
// 400 or 404 when there is none. m is one of f's maps: only the once-only
// load assigns them, so reading the field before taking f.mu is safe.
func fromPath[T any](w http.ResponseWriter, r *http.Request, f *fleet, m map[uint64]T, what string) (uint64, T, bool) {
	var zero T
	id, ok := idFromPath(w, r, what)
	if !ok {
		return 0, zero, false
	}
	f.mu.RLock()
	v, found := m[id]
	f.mu.RUnlock()
	if !found {
		writeErr(w, http.StatusNotFound, "%s %d not found", what, id)
		return 0, zero, false
	}
	return id, v, true
}

// sortedByID returns the records of m (one of f's maps) ordered by ID.
func sortedByID[T any](f *fleet, m map[uint64]T, key keyOf[T]) []T {
	f.mu.RLock()
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b T) int {
		ida, _ := key(a)
		idb, _ := key(b)
		return cmp.Compare(ida, idb)
	})
	return out
}

// nameTaken reports whether a record of m other than id is called name
// (case-insensitive, surrounding space ignored). The caller holds f.mu.
func nameTaken[T any](m map[uint64]T, key keyOf[T], name string, id uint64) bool {
	for _, v := range m {
		if vid, vname := key(v); vid != id && strings.EqualFold(vname, strings.TrimSpace(name)) {
			return true
		}
	}
	return false
}

// checkName trims name and reports a problem when it is empty, too long, or
// taken by another record (taken reports that).
func checkName(what, name string, taken bool) (string, string) {
	name = strings.TrimSpace(name)
	switch {
	case name == "" || len(name) > nameMax:
		return name, fmt.Sprintf("name %q: required, at most %d characters", name, nameMax)
	case plainText("name", name) != "":
		return name, plainText("name", name)
	case taken:
		return name, fmt.Sprintf("name %q: another %s has it", name, what)
	}
	return name, ""
}

// uniqueName is checkName against the records of m (one of f's maps) other
// than id, answering 400 when the name will not do. It takes f.mu itself.
func uniqueName[T any](w http.ResponseWriter, f *fleet, m map[uint64]T, key keyOf[T], what, name string, id uint64) (string, bool) {
	f.mu.RLock()
	taken := nameTaken(m, key, name, id)
	f.mu.RUnlock()
	name, problem := checkName(what, name, taken)
	if problem != "" {
		writeErr(w, http.StatusBadRequest, "%s", problem)
		return "", false
	}
	return name, true
}

// unknownIDs returns a problem naming every ID of field not in known (what
// names them: "tags"), or none. The caller holds f.mu when known is f's.
func unknownIDs[T any](field, what string, ids []uint64, known map[uint64]T) []string {
	if bad := missing(ids, known); len(bad) > 0 {
		return []string{fmt.Sprintf("%s %v: no such %s", field, bad, what)}
	}
	return nil
}

// sortedIDs returns a sorted copy of ids without repeats.
func sortedIDs(ids []uint64) []uint64 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// refuse answers 400 with every problem at once, reporting whether there
// were any.
func refuse(w http.ResponseWriter, problems []string) bool {
	if len(problems) == 0 {
		return false
	}
	writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
	return true
}

// writeFailed answers a store write (op: create, update or delete) of the
// what record id that ended in err: 404 when an update or delete found no
// record, else 500, logged as "<op> <what>" with logArgs. It reports whether
// err was set, that is whether the handler is done.
func (s *Server) writeFailed(w http.ResponseWriter, err error, op, what string, id uint64, logArgs ...any) bool {
	if err == nil {
		return false
	}
	if op != "create" && errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "%s %d not found", what, id)
		return true
	}
	s.log.Error(op+" "+what, append(logArgs, "err", err)...)
	verb := "store"
	if op == "delete" {
		verb = "delete"
	}
	writeErr(w, http.StatusInternalServerError, "could not %s the %s", verb, what)
	return true
}

// plainText is the problem with an operator's or a device's one-line text
// (a name, an edge ID, a hostname) holding what no name needs and a log or
// a terminal would act on: invalid UTF-8, or a control character (NUL, ESC,
// newline, DEL, the C1 controls). It is "" for text without them.
func plainText(field, s string) string {
	if !utf8.ValidString(s) {
		return fmt.Sprintf("%s %q: not valid UTF-8", field, s)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return fmt.Sprintf("%s %q: control character %U at byte %d; names take printable text only", field, s, []rune(s[i:])[0], i)
	}
	return ""
}
