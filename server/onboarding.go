package server

import (
	"fmt"
	"net/http"
	"sync"

	"outpost/protocol"
)

// The onboarding key (environment 0) carries a secret too, which every
// device calling with it proves as a pre-staged environment's first contact
// proves its own (protocol.SealEnrolled). Unlike those it is shared by a
// whole fleet, so it is not spent: it is rotated. Rotating it stops a
// waiting-room flood made with a leaked key at once, while devices already
// trusted are not touched (they call their own environments).
//
// The secret is kept sealed by the vault (secrets.go), since the API shows
// the key again whenever an operator asks.
type onboardingSecret struct {
	mu     sync.Mutex // guards secret and key
	secret string
	key    []byte // protocol.EnrollKey(secret)
}

// onboardingSetting is the store setting of the sealed secret.
const onboardingSetting = "onboarding_secret"

// loadOnboarding reads the onboarding secret, making one on first start.
func (s *Server) loadOnboarding() error {
	var sealed []byte
	ok, err := s.store.Setting(onboardingSetting, &sealed)
	if err != nil {
		return err
	}
	if !ok {
		return s.rotateOnboarding()
	}
	plain, err := s.vault.open(sealed)
	if err != nil {
		return fmt.Errorf("onboarding key secret: %w", err)
	}
	s.setOnboarding(string(plain))
	return nil
}

// rotateOnboarding makes and stores a new onboarding secret: the old key
// is refused from now on.
func (s *Server) rotateOnboarding() error {
	secret, _ := newEnrollSecret()
	sealed, err := s.vault.seal([]byte(secret))
	if err != nil {
		return err
	}
	if err := s.store.PutSetting(onboardingSetting, sealed); err != nil {
		return err
	}
	s.setOnboarding(secret)
	return nil
}

func (s *Server) setOnboarding(secret string) {
	o := &s.onboarding
	o.mu.Lock()
	o.secret, o.key = secret, protocol.EnrollKey(secret)
	o.mu.Unlock()
}

// onboardingKey returns the current onboarding edge key and its enrollment
// key.
func (s *Server) onboardingKey() (edgeKey string, enroll []byte) {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	return s.edgeKey(0, o.secret), o.key
}

func (s *Server) handleOnboardingKey(w http.ResponseWriter, _ *http.Request, _ session) {
	k, _ := s.onboardingKey()
	writeJSON(w, http.StatusOK, map[string]string{"edgeKey": k})
}

// handleRotateOnboardingKey serves POST /api/edge/onboarding-key: a new
// onboarding key; devices calling with the old one are refused, those
// already trusted are not affected.
func (s *Server) handleRotateOnboardingKey(w http.ResponseWriter, r *http.Request, ss session) {
	if err := s.rotateOnboarding(); err != nil {
		s.apiInternal(w, "rotate the onboarding key", err)
		return
	}
	s.audit(r, ss.user, auditOnboardingRotate, "onboarding key", "the old key is refused from now on")
	s.log.Info("onboarding key rotated")
	k, _ := s.onboardingKey()
	writeJSON(w, http.StatusOK, map[string]string{"edgeKey": k})
}
