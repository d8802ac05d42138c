package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func TestSecretRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	plain := []byte("registry password")
	sealed, err := SealSecret(key, 42, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain) {
		t.Fatal("the sealed secret holds the plain text")
	}
	got, err := OpenSecret(key, 42, sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q, %v", got, err)
	}
	other := bytes.Repeat([]byte{8}, 32)
	for name, open := range map[string]func() ([]byte, error){
		"other device":  func() ([]byte, error) { return OpenSecret(other, 42, sealed) },
		"other command": func() ([]byte, error) { return OpenSecret(key, 43, sealed) },
		"truncated":     func() ([]byte, error) { return OpenSecret(key, 42, sealed[:10]) },
		"tampered":      func() ([]byte, error) { b := bytes.Clone(sealed); b[len(b)-1] ^= 1; return OpenSecret(key, 42, b) },
	} {
		if _, err := open(); !errors.Is(err, ErrSecret) {
			t.Errorf("%s: err %v, want ErrSecret", name, err)
		}
	}
}
