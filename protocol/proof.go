package protocol

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Identity proofs.
//
// Tag covers the request's canonical CBOR with the Tag field itself left
// out: the top-level map as sent, whatever keys it holds (so a newer agent's
// extra fields are covered too), with key 4 (Proof) re-encoded without its
// key 3 (Tag) and key 5 (Enroll). Both SyncRequest and PollRequest keep
// Proof at key 4. Enroll covers the same bytes.
const (
	proofKey     = 4
	tagKey       = 3
	enrollKey    = 5
	answerTagKey = 9 // SyncAnswer.Tag
	// MACSize is the length of a MAC tag.
	MACSize = 16
	// macInfo labels the MAC key derivation; a new version gets a new label.
	macInfo = "outpost v1 device mac"
	// enrollLabel labels the enrollment key derivation.
	enrollLabel = "outpost v2 enrollment\x00"
	// bodyProofLabel starts what a body proof covers.
	bodyProofLabel = "outpost v2 body\x00"
)

// Body proofs.
//
// A request whose CBOR is larger than MaxUnprovedBody carries, in the HTTP
// header BodyProofHeader, "ENV.TAG": the environment and a tag over
// BodyProofInput(ENV, body as sent), TAG in unpadded URL-safe base64.
// (Agents of protocol version 1 send no such header: the server keeps
// them to MaxUnprovedBody, which their pings and deltas fit.) The tag
// is the MAC under the device's MAC key, or before the device has one, the
// MAC under its edge key's enrollment key (a pre-staged environment's first
// contact) or the Ed25519 signature by its identity key (a bound device
// signing again). A device that proves its first contact with the
// enrollment key sends that MAC followed by the signature, and the server
// takes either: if the first answer was lost, the server has bound the
// device and spent the enrollment key, and the signature is what verifies. The server checks it on the compressed bytes, before it
// inflates them: whoever cannot prove who they are gets MaxUnprovedBody of
// inflation, not MaxDecompressedBody. The proof inside the body still
// decides everything else.
const BodyProofHeader = "Outpost-Body-Proof"

// BodyProofInput is what a body proof of env covers: a label, env, and the
// SHA-256 of the body as sent (so neither side copies the body to sign it).
func BodyProofInput(env uint64, body []byte) []byte {
	h := sha256.Sum256(body)
	b := make([]byte, 0, len(bodyProofLabel)+8+len(h))
	b = append(b, bodyProofLabel...)
	b = binary.BigEndian.AppendUint64(b, env)
	return append(b, h[:]...)
}

// FormatBodyProof is the BodyProofHeader value for env and tag.
func FormatBodyProof(env uint64, tag []byte) string {
	return strconv.FormatUint(env, 10) + "." + base64.RawURLEncoding.EncodeToString(tag)
}

// ParseBodyProof reads a BodyProofHeader value.
func ParseBodyProof(v string) (env uint64, tag []byte, err error) {
	e, t, ok := strings.Cut(v, ".")
	if !ok {
		return 0, nil, fmt.Errorf("%w: body proof %q: want ENV.TAG", ErrMalformed, v)
	}
	if env, err = strconv.ParseUint(e, 10, 64); err != nil || env == 0 {
		return 0, nil, fmt.Errorf("%w: body proof %q: want a positive environment ID", ErrMalformed, v)
	}
	if tag, err = base64.RawURLEncoding.DecodeString(t); err != nil || (len(tag) != MACSize && len(tag) != 64 && len(tag) != MACSize+64) {
		return 0, nil, fmt.Errorf("%w: body proof %q: want a %d-byte MAC, a 64-byte signature, or both, in unpadded URL-safe base64", ErrMalformed, v, MACSize)
	}
	return env, tag, nil
}

// ServerKeyMessage is what the server's host key signs to vouch for its key
// agreement key.
func ServerKeyMessage(dh []byte) []byte {
	return append([]byte("outpost v1 server key agreement\x00"), dh...)
}

// Seal sets req's Proof.Tag to tag(input), input being the bytes Tag covers.
// req must have a Proof.
func Seal(req any, proof *Proof, tag func(input []byte) []byte) error {
	return SealEnrolled(req, proof, nil, tag)
}

// SealEnrolled is Seal for a first contact with an edge key's enrollment
// key (EnrollKey): it also sets Proof.Enroll, the MAC of input under it.
// A nil enroll leaves Enroll out, as Seal does.
func SealEnrolled(req any, proof *Proof, enroll []byte, tag func(input []byte) []byte) error {
	proof.Tag, proof.Enroll = nil, nil
	input, err := Marshal(req)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if enroll != nil {
		proof.Enroll = MAC(enroll, input)
	}
	proof.Tag = tag(input)
	return nil
}

// EnrollKey derives the key an enrollment secret MACs the first contact
// with. The server keeps this hash of the secret, never the secret.
func EnrollKey(secret string) []byte {
	h := sha256.Sum256([]byte(enrollLabel + secret))
	return h[:]
}

// ProofInput returns the bytes a request's Proof.Tag covers and its Proof,
// from the request's decompressed CBOR. It returns a nil Proof when the
// request carries none.
func ProofInput(raw []byte) ([]byte, *Proof, error) {
	var top map[uint64]RawMessage
	if err := Unmarshal(raw, &top); err != nil {
		return nil, nil, err
	}
	pr, ok := top[proofKey]
	if !ok {
		return nil, nil, nil
	}
	var fields map[uint64]RawMessage
	if err := Unmarshal(pr, &fields); err != nil {
		return nil, nil, err
	}
	var p Proof
	if err := Unmarshal(pr, &p); err != nil {
		return nil, nil, err
	}
	delete(fields, tagKey)
	delete(fields, enrollKey)
	if len(fields) == 0 {
		delete(top, proofKey)
	} else {
		b, err := Marshal(fields)
		if err != nil {
			return nil, nil, err
		}
		top[proofKey] = b
	}
	input, err := Marshal(top)
	if err != nil {
		return nil, nil, err
	}
	return input, &p, nil
}

// MACKey derives the key a device and the server share, from their X25519
// shared secret, bound to the environment and edge ID.
func MACKey(shared []byte, env uint64, edgeID string) ([]byte, error) {
	return hkdf.Key(sha256.New, shared, nil, macInfo+"\x00"+strconv.FormatUint(env, 10)+"\x00"+edgeID, 32)
}

// MAC is the MACSize-byte tag of input under key.
func MAC(key, input []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(input)
	return m.Sum(nil)[:MACSize]
}

// CheckMAC reports whether tag is input's MAC under key, in constant time.
func CheckMAC(key, input, tag []byte) bool {
	return len(tag) == MACSize && hmac.Equal(MAC(key, input), tag)
}

// Answer tags.
//
// An answer's Tag is the MAC, under the device's key, of the answer's
// canonical CBOR without its Tag followed by the counter of the request it
// answers (8 bytes, big-endian): an answer cannot be forged without the key,
// nor replayed to another request.

// SealAnswer sets ans.Tag for the request that carried counter.
func SealAnswer(ans *SyncAnswer, key []byte, counter uint64) error {
	ans.Tag = nil
	b, err := Marshal(ans)
	if err != nil {
		return fmt.Errorf("seal answer: %w", err)
	}
	ans.Tag = MAC(key, binary.BigEndian.AppendUint64(b, counter))
	return nil
}

// AnswerInput returns what an answer's Tag covers, given the answer's CBOR
// as received (fields this version does not know included) and the counter
// of the request it answers, and the Tag itself.
func AnswerInput(raw []byte, counter uint64) (input, tag []byte, err error) {
	var top map[uint64]RawMessage
	if err := Unmarshal(raw, &top); err != nil {
		return nil, nil, err
	}
	if t, ok := top[answerTagKey]; ok {
		if err := Unmarshal(t, &tag); err != nil {
			return nil, nil, err
		}
		delete(top, answerTagKey)
	}
	b, err := Marshal(top)
	if err != nil {
		return nil, nil, err
	}
	return binary.BigEndian.AppendUint64(b, counter), tag, nil
}
