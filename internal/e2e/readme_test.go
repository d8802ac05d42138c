//go:build integration

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost/internal/testenv"
)

// readmeBlocks returns the README's ```sh blocks that call curl, in order.
func readmeBlocks(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		switch {
		case cur == nil && line == "```sh":
			cur = &strings.Builder{}
		case cur != nil && line == "```":
			if curlCall.MatchString(cur.String()) {
				blocks = append(blocks, cur.String())
			}
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// curlCall matches each curl invocation in a shell block.
var curlCall = regexp.MustCompile(`(^|[\s$(])curl `)

// readmeStatus is the line the test's curl wrapper writes for each call.
var readmeStatus = regexp.MustCompile(`(?m)^readme-status (\d{3}) (\S+) (\S+)$`)

// TestReadmeExamples runs every curl example of the README, in order and as
// written, in one bash session against a fresh server, with the real agents
// the text says are there: ship-7 (async, pre-staged by the examples) and
// shop-3 (standard, through the waiting room). Only the server's address
// and the admin password are put in. Every answer must be 2xx, and the IDs
// the README promises must be the ones the server gave out.
func TestReadmeExamples(t *testing.T) {
	cli := testenv.RequireDocker(t)
	for _, c := range []string{"bash", "curl", "jq"} {
		_, err := exec.LookPath(c)
		testenv.Require(t, c+" (scripts/ci-deps.sh installs it)", err)
	}
	_, sleeper := startSleeper(t, cli, "outpost-e2e-readme")
	blocks := readmeBlocks(t)
	if len(blocks) < 5 {
		t.Fatalf("found %d curl blocks in README.md; the extraction is broken", len(blocks))
	}
	srv := startServer(t)

	var script strings.Builder
	script.WriteString(`set -euo pipefail
curl() { command curl --write-out '%{stderr}readme-status %{http_code} %{method} %{url_effective}\n' "$@"; }
step() { echo "$1" >&3; read -r _ <&4; }
`)
	calls := 0
	for i, b := range blocks {
		calls += len(curlCall.FindAllString(b, -1))
		b = strings.ReplaceAll(b, "https://localhost:9443", srv.URL)
		b = strings.ReplaceAll(b, `"password":"…"}' | jq`, `"password":"`+adminPassword+`"}' | jq`)
		fmt.Fprintf(&script, "step %d\n%s", i, b)
	}
	fmt.Fprintf(&script, "step %d\n", len(blocks))

	var stdout, stderr testenv.Buffer // read while bash writes
	// The agents the README's text assumes, started just before the block
	// that needs them.
	var agents []*proc
	before := func(block string) {
		if strings.Contains(block, "/api/waiting-room/trust") {
			var key struct{ EdgeKey string }
			srv.do(t, "GET", "/api/edge/onboarding-key", nil, &key, http.StatusOK)
			agents = append(agents, startStandardAgent(t, key.EdgeKey, t.TempDir(), "EDGE_ID=shop-3", "EDGE_STACK_PREFIX=outpost-e2e-readme-"))
			var room struct{ Total int }
			testenv.Eventually(t, 30*time.Second, func() (bool, string) {
				srv.do(t, "GET", "/api/waiting-room", nil, &room, http.StatusOK)
				return room.Total == 1, fmt.Sprintf("waiting room: %+v", room)
			})
		}
	}
	after := func(block string) {
		if strings.Contains(block, `"name":"ship-7"`) {
			// The key with its enrollment secret is in the creation
			// answer only, as the README's reader sees it.
			// (Its output may still be on its way from the pipe.)
			var e environment
			testenv.Eventually(t, 5*time.Second, func() (bool, string) {
				for line := range strings.SplitSeq(stdout.String(), "\n") {
					if strings.Contains(line, `"name":"ship-7"`) && json.Unmarshal([]byte(line), &e) == nil {
						return e.EdgeKey != "", ""
					}
				}
				return false, "no edge key for ship-7 in the answers so far:\n" + stdout.String()
			})
			agents = append(agents, startAgent(t, e.EdgeKey, t.TempDir(), "EDGE_STACK_PREFIX=outpost-e2e-readme-"))
			testenv.Eventually(t, 30*time.Second, func() (bool, string) {
				srv.do(t, "GET", "/api/environments/1", nil, &e, http.StatusOK)
				return e.EdgeID != "", "ship-7 has not bound its agent"
			})
		}
	}

	toGo, fromBash, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	toBash, fromGo, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = []*os.File{fromBash, toBash} // fd 3, fd 4
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fromBash.Close()
	toBash.Close()
	steps := bufio.NewScanner(toGo)
	last := -1
	for steps.Scan() {
		i, err := strconv.Atoi(steps.Text())
		if err != nil || i != last+1 {
			t.Fatalf("step %q after %d", steps.Text(), last)
		}
		if i > 0 {
			after(blocks[i-1])
		}
		if i < len(blocks) {
			t.Logf("README block %d:\n%s", i, blocks[i])
			before(blocks[i])
		}
		last = i
		if _, err := fromGo.WriteString("go\n"); err != nil {
			t.Fatal(err)
		}
	}
	fromGo.Close()
	err = cmd.Wait()
	t.Logf("answers:\n%s", stdout.String())
	if err != nil || last != len(blocks) {
		t.Fatalf("the README's examples stopped in block %d: %v\n%s", last, err, stderr.String())
	}

	got := readmeStatus.FindAllStringSubmatch(stderr.String(), -1)
	if len(got) != calls {
		t.Errorf("%d curl calls answered, the README has %d:\n%s", len(got), calls, stderr.String())
	}
	for _, m := range got {
		if m[1][0] != '2' {
			t.Errorf("README example %s %s answered %s", m[2], m[3], m[1])
		}
	}

	// What the text around the examples says holds.
	var shop struct {
		Mode   string `json:"mode"`
		EdgeID string `json:"edgeId"`
	}
	srv.do(t, "GET", "/api/environments/2", nil, &shop, http.StatusOK)
	if shop.Mode != "standard" || shop.EdgeID != "shop-3" {
		t.Errorf("environment 2 is %+v; the README says trusting shop-3 makes it standard environment 2", shop)
	}
	if !strings.Contains(stdout.String(), sleeper) {
		t.Errorf("the live container list through shop-3's tunnel lacks %s", sleeper)
	}
	if fi, err := os.Stat(filepath.Join(cmd.Dir, "outpost-backup.db")); err != nil || fi.Size() == 0 {
		t.Errorf("the backup example wrote no file: %v", err)
	}
}
