package edgeagent

import (
	"crypto/ecdh"
	"crypto/ed25519"

	"outpost/edgeagent/ident"
)

// counterBlock is how many proof counters the agent reserves at a time: the
// state is written once per block, not once per exchange (flash wears).
const counterBlock = ident.CounterBlock

// identity proves the device's requests (package ident).
type identity = ident.Identity

// newIdentity resumes the device's identity from its keys and state: counters
// start past the last reserved block, and the MAC key comes back if the
// server's key was kept. An error leaves a usable identity that signs.
func newIdentity(cfg Config, key ed25519.PrivateKey, dh *ecdh.PrivateKey, edgeID string, st *state) (*identity, error) {
	id := ident.New(key, dh, edgeID, cfg.Key)
	id.Counter = st.Reserved
	if id.Env == 0 {
		id.Env = st.EnvID // onboarded on an earlier start
	}
	if st.ServerDH != nil {
		if err := id.SetServerKey(st.ServerDH); err != nil {
			st.ServerDH = nil
			return id, err
		}
	}
	return id, nil
}

// reserveIn is the counter reservation of identity.Seal for the agent: when
// a counter passes the block reserved in st, a new block is reserved and
// persisted (save) before the counter is used.
func reserveIn(st *state, save func() error) func(counter uint64) error {
	return func(counter uint64) error {
		if counter <= st.Reserved {
			return nil
		}
		prev := st.Reserved
		st.Reserved = counter + counterBlock
		if err := save(); err != nil {
			// Not on disk, so not reserved: the next counter asks again,
			// and none is used that a restart could hand out once more.
			st.Reserved = prev
			return err
		}
		return nil
	}
}
