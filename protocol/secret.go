package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// secretInfo labels the key secrets are sealed under, derived from a
// device's MAC key so that it differs from the key that tags messages.
const secretInfo = "outpost command secret v1"

// ErrSecret: a sealed secret that does not open under the device's key.
var ErrSecret = errors.New("sealed secret does not open: it was not sealed for this device")

func secretAEAD(macKey []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, macKey, nil, secretInfo, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// SealSecret encrypts plain for the device whose MAC key is macKey, bound
// to command id: a nonce, then AES-GCM ciphertext and tag (28 bytes more
// than plain).
func SealSecret(macKey []byte, id uint64, plain []byte) ([]byte, error) {
	a, err := secretAEAD(macKey)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plain, binary.BigEndian.AppendUint64(nil, id)), nil
}

// OpenSecret decrypts what SealSecret sealed for command id.
func OpenSecret(macKey []byte, id uint64, sealed []byte) ([]byte, error) {
	a, err := secretAEAD(macKey)
	if err != nil {
		return nil, err
	}
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%w (%d bytes)", ErrSecret, len(sealed))
	}
	plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], binary.BigEndian.AppendUint64(nil, id))
	if err != nil {
		return nil, ErrSecret
	}
	return plain, nil
}

// StackContent is an edge stack's content as a device receives it: one blob,
// addressed by the SHA-256 of its CBOR. A compose stack fills Compose and
// Env and leaves Type empty, so its blob (and hash) is what it was before
// stacks had types; a Kubernetes stack has Type StackKubernetes, its YAML
// documents in Manifests and its default namespace. Agents older than the
// type ignore keys 3 to 5 and see an empty compose file, which they refuse.
type StackContent struct {
	Compose   []byte            `cbor:"1,keyasint"`
	Env       map[string]string `cbor:"2,keyasint,omitempty"` // interpolation variables, like an .env file
	Type      string            `cbor:"3,keyasint,omitempty"` // "" (compose) or StackKubernetes
	Manifests []byte            `cbor:"4,keyasint,omitempty"` // Kubernetes: the YAML documents
	Namespace string            `cbor:"5,keyasint,omitempty"` // Kubernetes: where namespaced objects without one go ("" is "default")
}

// Stack types. A compose stack's type is empty on the wire.
const (
	StackCompose    = "compose"
	StackKubernetes = "kubernetes"
)

// RegistryAuth is one registry's credentials, sealed into a stack.deploy
// command's Secret as a CBOR array.
type RegistryAuth struct {
	Server   string `cbor:"1,keyasint"`
	Username string `cbor:"2,keyasint"`
	Password string `cbor:"3,keyasint"`
}
