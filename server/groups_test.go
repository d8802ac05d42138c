package server

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"outpost/server/store"
)

func TestEdgeGroupMembership(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	tag := func(name string) uint64 {
		var tg store.Tag
		apiJSON(t, hs, "POST", "/api/tags", tok, map[string]string{"name": name}, &tg, http.StatusCreated)
		return tg.ID
	}
	north, gpu := tag("north"), tag("gpu")
	apiJSON(t, hs, "POST", "/api/tags", tok, map[string]string{"name": "GPU"}, nil, http.StatusBadRequest) // taken
	env := func(name string) uint64 {
		var e createdEnvironment
		apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": name}, &e, http.StatusCreated)
		return e.ID
	}
	a, b, c := env("a"), env("b"), env("c")

	group := func(body map[string]any) uint64 {
		var g edgeGroupView
		apiJSON(t, hs, "POST", "/api/edge-groups", tok, body, &g, http.StatusCreated)
		return g.ID
	}
	all := group(map[string]any{"name": "all", "dynamic": true, "tagIds": []uint64{north, gpu}, "match": "all"})
	anyG := group(map[string]any{"name": "any", "dynamic": true, "tagIds": []uint64{north, gpu}, "match": "any"})
	static := group(map[string]any{"name": "static", "environmentIds": []uint64{c, a}})
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "bad", "dynamic": true, "match": "most", "tagIds": []uint64{77}}, nil, http.StatusBadRequest)
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "bad", "environmentIds": []uint64{77}}, nil, http.StatusBadRequest)

	members := func(g uint64) []uint64 {
		t.Helper()
		var v edgeGroupView
		apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-groups/%d", g), tok, nil, &v, http.StatusOK)
		if !slices.Equal(v.Members, nonNil(s.edgeGroupMembers(g))) {
			t.Fatalf("API members %v, edgeGroupMembers %v", v.Members, s.edgeGroupMembers(g))
		}
		return v.Members
	}
	check := func(step string, g uint64, want ...uint64) {
		t.Helper()
		if got := members(g); !slices.Equal(got, nonNil(want)) {
			t.Errorf("%s: group %d members %v, want %v", step, g, got, want)
		}
	}
	check("start", all)
	check("start", anyG)
	check("start", static, a, c)

	if err := s.setEnvironmentTags(a, []uint64{north}); err != nil {
		t.Fatal(err)
	}
	apiJSON(t, hs, "PATCH", fmt.Sprintf("/api/environments/%d", b), tok, map[string]any{"tagIds": []uint64{north, gpu}}, nil, http.StatusOK)
	check("tagged", all, b)
	check("tagged", anyG, a, b)
	if err := s.setEnvironmentTags(a, []uint64{999}); err == nil {
		t.Error("unknown tag accepted")
	}

	// A rule change recomputes the group.
	apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-groups/%d", all), tok, map[string]any{"name": "all", "dynamic": true, "tagIds": []uint64{north}, "match": "all"}, nil, http.StatusOK)
	check("rule changed", all, a, b)

	// Untagging follows.
	if err := s.setEnvironmentTags(b, []uint64{gpu}); err != nil {
		t.Fatal(err)
	}
	check("untagged", all, a)
	check("untagged", anyG, a, b)

	// Static groups: addToEdgeGroups, and dynamic ones refuse it.
	if err := s.addToEdgeGroups(b, []uint64{static}); err != nil {
		t.Fatal(err)
	}
	check("added", static, a, b, c)
	if err := s.addToEdgeGroups(b, []uint64{anyG}); err == nil {
		t.Error("added to a dynamic group")
	}

	// Deleting a tag takes it off environments and rules.
	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/tags/%d", north), tok, nil, nil, http.StatusNoContent)
	check("tag deleted", all) // its only tag is gone: no members
	check("tag deleted", anyG, b)
	if e, _ := s.store.Environment(a); len(e.TagIDs) != 0 {
		t.Errorf("environment a still tagged: %v", e.TagIDs)
	}
	gs, _ := s.store.EdgeGroups()
	for _, g := range gs {
		if slices.Contains(g.TagIDs, north) {
			t.Errorf("stored group %d still uses the deleted tag", g.ID)
		}
	}

	// Deleting an environment takes it out of its groups.
	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/environments/%d", c), tok, nil, nil, http.StatusNoContent)
	check("environment deleted", static, a, b)

	// A restart rebuilds the same memberships from the store.
	fresh := &Server{store: s.store, log: s.log}
	for _, g := range []uint64{all, anyG, static} {
		if got, want := fresh.edgeGroupMembers(g), s.edgeGroupMembers(g); !slices.Equal(got, want) {
			t.Errorf("group %d after reload: %v, want %v", g, got, want)
		}
	}

	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/edge-groups/%d", static), tok, nil, nil, http.StatusNoContent)
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/edge-groups/%d", static), tok, nil, nil, http.StatusNotFound)
	for _, action := range []string{auditTagCreate, auditTagDelete, auditEdgeGroupCreate, auditEdgeGroupUpdate, auditEdgeGroupDelete} {
		entries, _ := s.store.Audit(0, 1000, true)
		if !slices.ContainsFunc(entries, func(e store.AuditEntry) bool { return e.Action == action }) {
			t.Errorf("%s not audited", action)
		}
	}
}

func TestEnvironmentGroups(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	var g1, g2 store.EnvironmentGroup
	apiJSON(t, hs, "POST", "/api/environment-groups", tok, map[string]string{"name": "one"}, &g1, http.StatusCreated)
	apiJSON(t, hs, "POST", "/api/environment-groups", tok, map[string]string{"name": "two"}, &g2, http.StatusCreated)
	var e createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "x"}, &e, http.StatusCreated)
	path := fmt.Sprintf("/api/environments/%d", e.ID)
	apiJSON(t, hs, "PATCH", path, tok, map[string]any{"groupId": g1.ID}, nil, http.StatusOK)
	// At most one group: moving it takes it out of the first.
	apiJSON(t, hs, "PATCH", path, tok, map[string]any{"groupId": g2.ID}, nil, http.StatusOK)
	var v envGroupView
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/environment-groups/%d", g1.ID), tok, nil, &v, http.StatusOK)
	if len(v.EnvironmentIDs) != 0 {
		t.Errorf("group one still lists %v", v.EnvironmentIDs)
	}
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/environment-groups/%d", g2.ID), tok, nil, &v, http.StatusOK)
	if !slices.Equal(v.EnvironmentIDs, []uint64{e.ID}) {
		t.Errorf("group two lists %v", v.EnvironmentIDs)
	}
	apiJSON(t, hs, "PUT", fmt.Sprintf("/api/environment-groups/%d", g2.ID), tok, map[string]string{"name": "deux"}, nil, http.StatusOK)
	apiJSON(t, hs, "DELETE", fmt.Sprintf("/api/environment-groups/%d", g2.ID), tok, nil, nil, http.StatusNoContent)
	if st, _ := s.store.Environment(e.ID); st.GroupID != 0 {
		t.Errorf("environment still in deleted group %d", st.GroupID)
	}
	var list []store.EnvironmentGroup
	apiJSON(t, hs, "GET", "/api/environment-groups", tok, nil, &list, http.StatusOK)
	if len(list) != 1 || list[0].ID != g1.ID {
		t.Errorf("groups = %+v", list)
	}
}
