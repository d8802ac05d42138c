package server

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"outpost/protocol"
)

// An onboarding flood from 120 addresses of one network is slowed down by
// the network's limit instead of filling the room; devices that called once
// and never again expire, and a device still calling stays.
func TestOnboardingFloodFromManyAddresses(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	slowed := 0
	for i := range 120 {
		d := onboardingDevice(t, hs, fmt.Sprint("flood-", i))
		d.remote = fmt.Sprintf("127.0.0.%d:5000", i+1)
		status, _, _ := d.callIn()
		if status == http.StatusTooManyRequests {
			slowed++
		}
	}
	if got := listWaiting(t, hs, admin, "").Total; got != defaultNewDevicesPerNet || slowed != 120-defaultNewDevicesPerNet {
		t.Fatalf("120 devices from one /24: %d waiting, %d slowed down; want %d waiting", got, slowed, defaultNewDevicesPerNet)
	}
	// One device keeps calling; the others never come back.
	keeper := onboardingDevice(t, hs, "keeper")
	keeper.remote = "198.51.100.7:5000"
	if status, _, perr := keeper.callIn(); status != http.StatusOK {
		t.Fatalf("keeper: %d %+v", status, perr)
	}
	for range 7 {
		advance(10 * time.Minute)
		if status, _, perr := keeper.callIn(); status != http.StatusOK {
			t.Fatalf("keeper check-in: %d %+v", status, perr)
		}
		s.flush()
	}
	room := listWaiting(t, hs, admin, "")
	if room.Total != 1 || room.Items[0].EdgeID != "keeper" {
		t.Fatalf("after 70 minutes: %+v, want only the device still calling", room)
	}
}

// Rotating the onboarding key refuses every device calling with the old one,
// waiting ones included, while a device already trusted by its key keeps
// going and new devices with the new key wait as before. The secret outlives
// a restart.
func TestOnboardingKeyRotation(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	if err := s.rotateOnboarding(); err != nil {
		t.Fatal(err)
	}
	var key struct{ EdgeKey string }
	apiJSON(t, hs, "GET", "/api/edge/onboarding-key", admin, nil, &key, http.StatusOK)
	old, err := protocol.ParseEdgeKey(key.EdgeKey)
	if err != nil || old.EnvironmentID != 0 || old.Secret == "" {
		t.Fatalf("onboarding key %q: %+v %v", key.EdgeKey, old, err)
	}
	with := func(name, secret string) *device {
		d := onboardingDevice(t, hs, name)
		d.secret = secret
		return d
	}
	if status, _, _ := with("no-secret", "").callIn(); status != http.StatusForbidden {
		t.Fatalf("a device without the onboarding secret: %d", status)
	}
	waiter, trusted := with("waiter", old.Secret), with("trusted", old.Secret)
	es := s.edgeSettings()
	es.PreauthorizedKeys = []string{keyFingerprint(trusted.key.Public().(ed25519.PublicKey))}
	if err := s.putEdgeSettings(es); err != nil {
		t.Fatal(err)
	}
	if status, ans, _ := waiter.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting {
		t.Fatalf("waiter: %d %+v", status, ans)
	}
	if status, ans, _ := trusted.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustTrusted {
		t.Fatalf("trusted: %d %+v", status, ans)
	}

	var rotated struct{ EdgeKey string }
	apiJSON(t, hs, "POST", "/api/edge/onboarding-key", admin, nil, &rotated, http.StatusOK)
	next, _ := protocol.ParseEdgeKey(rotated.EdgeKey)
	if next.Secret == "" || next.Secret == old.Secret {
		t.Fatalf("rotated key %+v", next)
	}
	if status, _, _ := waiter.callIn(); status != http.StatusForbidden {
		t.Fatalf("a waiting device with the old key after the rotation: %d", status)
	}
	if status, _, _ := with("late", old.Secret).callIn(); status != http.StatusForbidden {
		t.Fatalf("a new device with the old key: %d", status)
	}
	if status, ans, perr := trusted.callIn(); status != http.StatusOK || ans.EnvID == 0 {
		t.Fatalf("a device trusted by its key, still on the old onboarding key: %d %+v %+v", status, ans, perr)
	}
	if status, ans, _ := with("fresh", next.Secret).callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting {
		t.Fatalf("a new device with the new key: %d %+v", status, ans)
	}
	// A restarted server keeps the rotated secret.
	s.setOnboarding("")
	if err := s.loadOnboarding(); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.onboardingKey(); k != rotated.EdgeKey {
		t.Fatalf("after a reload the key is %q, want %q", k, rotated.EdgeKey)
	}
}
