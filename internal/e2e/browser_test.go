//go:build integration

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/moby/moby/client"

	"outpost/internal/browser"
	"outpost/internal/testenv"
)

// TestConsoleInABrowser drives the web console in a real chromium against a
// real server and two real agents on the real engine: log in, trust both
// devices from the waiting room with an edge group and a tag, find them in
// the list, open a snapshot, queue a container stop and see its result, then
// move through the timeline and open the diff the stop made. Screenshots go
// to OUTPOST_SCREENSHOTS (else the test's temp dir).
func TestConsoleInABrowser(t *testing.T) {
	cli := testenv.RequireDocker(t)
	b := browser.New(t)
	sleeperID, sleeper := startSleeper(t, cli, "outpost-e2e-ui")

	srv := startServer(t)
	srv.do(t, "PUT", "/api/settings/edge", map[string]any{
		"frequencies": map[string]int{"ping": 1, "snapshot": 2, "command": 1},
	}, nil, http.StatusOK)
	var tag, group struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/tags", map[string]any{"name": "eu-north"}, &tag, http.StatusCreated)
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "pilot", "environmentIds": []uint64{}}, &group, http.StatusCreated)
	var key struct{ EdgeKey string }
	srv.do(t, "GET", "/api/edge/onboarding-key", nil, &key, http.StatusOK)
	for _, id := range []string{"till-north-1", "till-north-2"} {
		startAgent(t, key.EdgeKey, t.TempDir(), "EDGE_ID="+id)
	}

	logIn(b, srv, "/waiting-room", chromedp.ID("onboarding"))
	if h := b.Text("h1"); h != "Waiting room" {
		t.Fatalf("after login: %q at %s", h, b.Location())
	}

	// Both devices wait; trust them with the group and the tag.
	rows := func() int { return len(b.Nodes(`table.waiting tbody tr`)) }
	b.WaitFor(30*time.Second, "two devices in the waiting room", func() bool { return rows() == 2 })
	page := b.Text("main")
	for _, want := range []string{"till-north-1", "till-north-2", "2 waiting", "async", "SHA256:", "Onboarding key", "docker run"} {
		if !strings.Contains(page, want) {
			t.Errorf("waiting room lacks %q", want)
		}
	}
	b.Shot("waiting-room")
	if n := b.ClickAll(`input[name=id]`); n != 2 {
		t.Fatalf("%d device checkboxes", n)
	}
	b.Do("trust", chromedp.SetValue(chromedp.CSS(`select[name=group]`), fmt.Sprint(group.ID)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name=tag][value="%d"]`, tag.ID))),
		chromedp.Click(chromedp.CSS(`button[value=trust]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.results`)))
	if h := b.Text("h1"); h != "2 devices trusted" {
		t.Fatalf("trust result: %q", h)
	}
	b.Shot("trusted")

	// Both are in the list under the tag, and the room is empty.
	b.Do("list by tag", chromedp.Navigate(fmt.Sprintf("%s/environments?tag=%d", srv.URL, tag.ID)))
	if n := len(b.Nodes(`table.envs tbody tr`)); n != 2 {
		t.Fatalf("%d environments tagged eu-north, want 2", n)
	}
	if page := b.Text("table.envs"); strings.Count(page, "eu-north") != 2 {
		t.Errorf("the list does not show the tag on both devices: %q", page)
	}
	b.Shot("environments")

	// Open one, wait for its snapshot with the sleeper running.
	b.Do("open", chromedp.Click(chromedp.CSS(`table.envs tbody tr:first-child a`)), chromedp.WaitVisible(chromedp.CSS(`h1`)))
	envURL := b.Location()
	b.WaitFor(60*time.Second, "the snapshot with the sleeper", func() bool {
		return strings.Contains(b.Text("main"), sleeper)
	})
	b.Do("open the sleeper", chromedp.Click(chromedp.CSS(`a[href*="container=`+sleeperID[:12]+`"]`)), chromedp.WaitVisible(chromedp.ID("container-detail")))
	if d := b.Text("#container-detail"); !strings.Contains(d, "running") || !strings.Contains(d, "sleep 600") {
		t.Fatalf("container detail: %q", d)
	}
	b.Shot("container")

	// Queue the stop; the commands tab shows it pending, then its result.
	b.Do("stop", chromedp.Click(chromedp.CSS(`#container-detail button[value="container.stop"]`)), chromedp.WaitVisible(chromedp.ID("commands")))
	b.Shot("command-queued")
	b.WaitFor(60*time.Second, "the stop's result", func() bool {
		return len(b.Nodes(`table.results tbody tr`)) == 1 && strings.Contains(b.Text("table.results"), "ok")
	})
	if r := b.Text("table.results"); !strings.Contains(r, "container.stop") || !strings.Contains(r, sleeper) {
		t.Fatalf("results: %q", r)
	}
	b.Shot("command-result")
	inspect, err := cli.ContainerInspect(t.Context(), sleeper, client.ContainerInspectOptions{})
	if err != nil || inspect.Container.State.Running {
		t.Fatalf("the engine says the sleeper runs (%v)", err)
	}

	// The snapshot shows it exited; the timeline has the point before.
	b.Do("back to the snapshot", chromedp.Navigate(envURL+"?tab=history"))
	b.WaitFor(60*time.Second, "a point after the stop", func() bool {
		b.Do("containers", chromedp.Navigate(envURL+"?tab=containers"))
		return strings.Contains(b.Text("table.grid"), "exited")
	})
	b.Do("history", chromedp.Navigate(envURL+"?tab=history"), chromedp.WaitVisible(chromedp.CSS(`form.timeline`)))
	b.Shot("timeline")
	if n := len(b.Nodes(`form.timeline input[name=from]`)); n < 2 {
		t.Fatalf("%d points to compare from", n)
	}
	// As it was: the oldest point still has the sleeper running.
	links := b.Nodes(`form.timeline a`)
	if len(links) == 0 {
		t.Fatal("no point of the timeline to open")
	}
	b.Do("the oldest point", chromedp.MouseClickNode(links[len(links)-1]), chromedp.WaitVisible(chromedp.CSS(`.notice.past`)))
	if p := b.Text("main"); !strings.Contains(p, "You are looking at seq") || !strings.Contains(p, sleeper) {
		t.Fatalf("the past point: %q", p)
	}
	b.Shot("past-point")

	// The diff of the two latest points: the sleeper went from running to
	// exited.
	b.Do("compare", chromedp.Navigate(envURL+"?tab=history"), chromedp.WaitVisible(chromedp.CSS(`form.timeline`)),
		// The environment page has a .pagehead h1 too: wait for the diff's
		// own section, or the text may be read before the page changed.
		chromedp.Click(chromedp.CSS(`form.timeline button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`section.points`)))
	diff := b.Text("main")
	if !strings.Contains(diff, sleeper) || !strings.Contains(diff, "state running → exited") {
		t.Fatalf("the diff does not show the stop: %q", diff)
	}
	b.Shot("diff")
}

// logIn opens path of srv's console, logs in as admin on the login page it
// is sent to, and waits for sel on the page it comes back to.
func logIn[S chromedp.Selectable](b *browser.Browser, srv *server, path string, sel S) {
	b.Do("log in", chromedp.Navigate(srv.URL+path),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), adminPassword),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(sel))
}
