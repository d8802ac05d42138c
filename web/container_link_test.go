package web_test

import (
	"fmt"
	"strings"
	"testing"

	"outpost/snapshot"
)

// TestContainerLinkOpensItsOwnContainer: the containers list links each
// row by ID. A device that names one container after another's ID must not
// make that row open the other's detail, whose buttons would act on it; a
// link by name still opens the container of that name.
func TestContainerLinkOpensItsOwnContainer(t *testing.T) {
	s := newSite(t)
	const victim, decoy = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
	s.b.snaps[envShop].Docker = &snapshot.Snapshot{Containers: []snapshot.Container{
		{ID: decoy, Name: victim, Image: "busybox", State: snapshot.StateRunning},
		{ID: victim, Name: "web", Image: "nginx", State: snapshot.StateRunning},
	}}
	_, list := s.get(fmt.Sprintf("/environments/%d?tab=containers", envShop))
	link := "?tab=containers&amp;container=" + victim + `">web</a>`
	if !strings.Contains(list, link) {
		t.Fatalf("the row of web does not link to container=%s", victim)
	}
	_, body := s.get(fmt.Sprintf("/environments/%d?tab=containers&container=%s", envShop, victim))
	if strings.Contains(body, `name="target" value="`+decoy+`"`) {
		t.Fatalf("the link on web's row opens container %s, and its buttons act on it", decoy)
	}
	if !strings.Contains(body, `name="target" value="`+victim+`"`) {
		t.Fatal("the link on web's row does not open web")
	}
	_, byName := s.get(fmt.Sprintf("/environments/%d?tab=containers&container=web", envShop))
	if !strings.Contains(byName, `name="target" value="`+victim+`"`) {
		t.Fatal("a link by name does not open the container of that name")
	}
}
