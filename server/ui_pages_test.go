package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/server/store"
)

// uiNoPanic runs c.do and turns a panic into a test failure naming target.
func uiNoPanic(t *testing.T, c *uiClient, target string) (status int) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("GET %s panics: %v", target, p)
		}
	}()
	status, _ = c.do("GET", target, nil)
	return status
}

// TestUIHugePageNumbers: ?page= is any positive int; (page-1)*50
// its offset must not overflow into a slice bound that wraps negative, in
// the waiting room's List or the fleet index's lastCheckIn page.
func TestUIHugePageNumbers(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "ops", RoleAdmin, "correct horse battery")
	e := &store.Environment{Name: "shop", Mode: store.ModeAsync, Trusted: true, Created: time.Now().Unix(), EdgeID: "gw-1",
		Agent: &protocol.AgentInfo{Version: "0.3.1", Hostname: "gw"}}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	s.fleetIndex().putEnv(e)
	if status, _, perr := onboardingDevice(t, hs, "till-a").callIn(); status != http.StatusOK {
		t.Fatalf("call in: %d %+v", status, perr)
	}
	ui := &uiClient{t: t, h: s.uiHandler(), tok: admin}
	const page = 3504881374004814808 // (page-1)*50 == 1<<63 - 2
	for _, target := range []string{
		fmt.Sprintf("/waiting-room?page=%d", page),
		fmt.Sprintf("/environments?sort=lastCheckIn&page=%d", page),
		fmt.Sprintf("/environments?sort=-lastCheckIn&page=%d", uint64(1)<<62),
	} {
		if status := uiNoPanic(t, ui, target); status != http.StatusOK {
			t.Errorf("GET %s: %d", target, status)
		}
	}
}

// TestUIRotateOnboardingKeyAsTheAPI: the UI grants rotating the
// onboarding key to the roles the API does (environments:write), and
// refuses the others as the API does.
func TestUIRotateOnboardingKeyAsTheAPI(t *testing.T) {
	s, hs := testServer(t)
	for _, role := range []string{RoleOperator, RoleReadOnly} {
		_, tok := addUser(t, s, "u-"+role, role, "correct horse battery")
		ui := &uiClient{t: t, h: s.uiHandler(), tok: tok}
		uiStatus, _ := ui.do("POST", "/waiting-room/rotate", map[string][]string{"x": {"1"}})
		apiStatus, _ := call(t, hs, "POST", "/api/edge/onboarding-key", tok, nil)
		if (uiStatus == http.StatusForbidden) != (apiStatus == http.StatusForbidden) {
			t.Fatalf("%s rotating the onboarding key: UI %d, API %d", role, uiStatus, apiStatus)
		}
		if role == RoleOperator && uiStatus == http.StatusForbidden {
			t.Fatalf("an operator may not rotate the key in the UI: %d", uiStatus)
		}
	}
}
