// Package browser drives Debian's chromium from tests with chromedp: the
// web UI's pages as a person sees them, with PNG screenshots to look at.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"outpost/internal/testenv"
)

// Browser is one headless chromium with one tab.
type Browser struct {
	t    testing.TB
	ctx  context.Context
	dir  string // where screenshots go
	shot int
}

// chromium finds the browser: OUTPOST_CHROMIUM, else chromium on PATH.
func chromium() (string, error) {
	if p := os.Getenv("OUTPOST_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed (make test installs it: bash scripts/ci-deps.sh)")
}

// New starts chromium headless on a fresh profile, skipping the test (or
// failing it under CI) when there is none. Screenshots go to
// OUTPOST_SCREENSHOTS, else the test's temp dir.
func New(t testing.TB) *Browser {
	t.Helper()
	path, err := chromium()
	testenv.Require(t, "browser", err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		// Without these it reaches for the network it does not have.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The server under test has a self-signed certificate.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1440, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		testenv.Require(t, "browser that starts", fmt.Errorf("%s: %w", path, err))
	}
	dir := os.Getenv("OUTPOST_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return &Browser{t: t, ctx: ctx, dir: dir}
}

// Do runs steps, failing the test when one fails or all take over a
// minute; what names them in the failure.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		url, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.Shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s (at %s): %v", what, url, err)
	}
}

// Shot saves a PNG of the whole page as NN-name.png and returns its path.
func (b *Browser) Shot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100: PNG; below, JPEG
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	b.shot++
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shot, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
	return p
}

// Text is the text of the first element matching the CSS selector sel.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	// A page that is still being replaced (a navigation just done) drops
	// the node found: ask again.
	var s string
	var err error
	for range 5 {
		if s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)); err == nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		b.Shot("failed-text")
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// Nodes are the elements matching the CSS selector sel now; none is not an
// error.
func (b *Browser) Nodes(sel string) []*chromedp.Node {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	var nodes []*chromedp.Node
	var err error
	for range 5 { // as Text: the page may be in the middle of a navigation
		if nodes, err = chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0))); err == nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("find %s: %v", sel, err)
	}
	return nodes
}

// ClickAll clicks every element matching the CSS selector sel, and returns
// how many there were.
func (b *Browser) ClickAll(sel string) int {
	b.t.Helper()
	nodes := b.Nodes(sel)
	for _, n := range nodes {
		b.Do("click "+sel, chromedp.MouseClickNode(n))
	}
	return len(nodes)
}

// Location is the page's URL.
func (b *Browser) Location() string {
	b.t.Helper()
	u, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// WaitFor reloads the page every second until cond holds, for up to
// timeout.
func (b *Browser) WaitFor(timeout time.Duration, what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Shot("timeout-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(time.Second)
		b.Do("reload", chromedp.Reload())
	}
}
