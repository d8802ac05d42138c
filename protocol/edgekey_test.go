package protocol_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"outpost/protocol"
)

// A fingerprint as ssh-keygen prints it: SHA256: and 43 unpadded base64
// characters of the key's SHA-256.
const testFingerprint = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"

var keySentinels = []error{
	protocol.ErrKeyEmpty, protocol.ErrKeyEncoding, protocol.ErrKeyFields, protocol.ErrKeyServerURL,
	protocol.ErrKeyTunnelAddr, protocol.ErrKeyFingerprint, protocol.ErrKeyEnvironment, protocol.ErrKeySecret,
}

// testSecret is a 32-byte enrollment secret.
var testSecret = strings.Repeat("\x5a", protocol.EnrollSecretSize)

func TestEdgeKeyRoundTrip(t *testing.T) {
	for _, k := range []protocol.EdgeKey{
		{ServerURL: "https://outpost.example.com", TunnelAddr: "outpost.example.com:8000", TunnelFingerprint: testFingerprint},
		{ServerURL: "https://outpost.example.com:9443/base/path", TunnelAddr: "tunnel.example.com:443", TunnelFingerprint: testFingerprint, EnvironmentID: 42},
		{ServerURL: "https://10.0.0.5", TunnelAddr: "10.0.0.5:8000", TunnelFingerprint: testFingerprint, EnvironmentID: 1},
		{ServerURL: "https://[2001:db8::1]:9443", TunnelAddr: "[2001:db8::1]:8000", TunnelFingerprint: testFingerprint, EnvironmentID: 1<<64 - 1},
		{ServerURL: "https://outpost.example.com", TunnelAddr: "outpost.example.com:8000", TunnelFingerprint: testFingerprint, EnvironmentID: 7, Secret: testSecret},
	} {
		s := k.String()
		if strings.ContainsAny(s, "=\n ") {
			t.Errorf("%#v encodes to %q: padded or spaced", k, s)
		}
		raw, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%q is not unpadded base64: %v", s, err)
		}
		if want := 3 + len(k.Secret)/protocol.EnrollSecretSize; strings.Count(string(raw), "|") != want {
			t.Errorf("%q decodes to %q, want %d fields", s, raw, want+1)
		}
		got, err := protocol.ParseEdgeKey(s)
		if err != nil {
			t.Fatalf("ParseEdgeKey(%q) = %v", s, err)
		}
		if got != k {
			t.Errorf("round trip: got %#v, want %#v", got, k)
		}
		// What a user pastes often comes with a newline or spaces around it.
		if got, err := protocol.ParseEdgeKey("  " + s + "\n"); err != nil || got != k {
			t.Errorf("ParseEdgeKey with surrounding space = %#v, %v", got, err)
		}
	}

	// The Portainer-style layout, spelled out.
	want := protocol.EdgeKey{ServerURL: "https://o.example", TunnelAddr: "o.example:8000", TunnelFingerprint: testFingerprint, EnvironmentID: 3}
	s := base64.RawStdEncoding.EncodeToString([]byte("https://o.example|o.example:8000|" + testFingerprint + "|3"))
	if want.String() != s {
		t.Errorf("String() = %q, want %q", want.String(), s)
	}
}

// rawKey encodes fields joined by | as an edge key would be, without checks.
func rawKey(fields ...string) string {
	return base64.RawStdEncoding.EncodeToString([]byte(strings.Join(fields, "|")))
}

// key is a well-formed key with one field replaced.
func key(field int, value string) string {
	f := []string{"https://outpost.example.com", "outpost.example.com:8000", testFingerprint, "7"}
	f[field] = value
	return rawKey(f...)
}

func TestParseEdgeKeyErrors(t *testing.T) {
	const (
		url = iota
		tunnel
		fingerprint
		env
	)
	// Padded base64 of a key whose length is not a multiple of 3.
	valid := rawKey("https://outpost.example.com", "outpost.example.com:8000", testFingerprint, "7")
	padded := base64.StdEncoding.EncodeToString([]byte("https://outpost.example.com|outpost.example.com:8000|" + testFingerprint + "|42"))
	if !strings.HasSuffix(padded, "=") {
		t.Fatalf("test key %q needs padding", padded)
	}
	// The same key in the URL-safe alphabet: the path makes it use - and _.
	urlSafe := base64.RawURLEncoding.EncodeToString([]byte("https://outpost.example.com/???>>>|outpost.example.com:8000|" + testFingerprint + "|7"))
	if !strings.ContainsAny(urlSafe, "-_") {
		t.Fatalf("test key %q has no URL-safe characters", urlSafe)
	}
	if _, err := protocol.ParseEdgeKey(valid); err != nil {
		t.Fatalf("the valid base of these cases does not parse: %v", err)
	}

	for _, tc := range []struct {
		name string
		key  string
		want error
	}{
		{"empty", "", protocol.ErrKeyEmpty},
		{"blank", " \t\n", protocol.ErrKeyEmpty},

		{"padded base64", padded, protocol.ErrKeyEncoding},
		{"URL-safe alphabet", urlSafe, protocol.ErrKeyEncoding},
		{"not base64", "not an edge key!", protocol.ErrKeyEncoding},
		{"space inside", valid[:10] + " " + valid[10:], protocol.ErrKeyEncoding},

		{"three fields", rawKey("https://outpost.example.com", "outpost.example.com:8000", testFingerprint), protocol.ErrKeyFields},
		{"six fields", rawKey("https://outpost.example.com", "outpost.example.com:8000", testFingerprint, "7", "x", "y"), protocol.ErrKeyFields},
		{"secret too short", rawKey("https://outpost.example.com", "outpost.example.com:8000", testFingerprint, "7", "WlpaWlpa"), protocol.ErrKeySecret},
		{"secret not URL-safe base64", rawKey("https://outpost.example.com", "outpost.example.com:8000", testFingerprint, "7", strings.Repeat("+", 43)), protocol.ErrKeySecret},
		{"secret empty", rawKey("https://outpost.example.com", "outpost.example.com:8000", testFingerprint, "7", ""), protocol.ErrKeySecret},
		{"one field", rawKey("https://outpost.example.com"), protocol.ErrKeyFields},

		{"http URL", key(url, "http://outpost.example.com"), protocol.ErrKeyServerURL},
		{"URL without host", key(url, "https://"), protocol.ErrKeyServerURL},
		{"URL with path and no host", key(url, "https:///edge"), protocol.ErrKeyServerURL},
		{"URL with query", key(url, "https://outpost.example.com/?env=7"), protocol.ErrKeyServerURL},
		{"URL with fragment", key(url, "https://outpost.example.com/#x"), protocol.ErrKeyServerURL},
		{"relative URL", key(url, "outpost.example.com"), protocol.ErrKeyServerURL},
		{"empty URL", key(url, ""), protocol.ErrKeyServerURL},
		{"unparsable URL", key(url, "https://outpost.example.com:port"), protocol.ErrKeyServerURL},

		{"tunnel without port", key(tunnel, "outpost.example.com"), protocol.ErrKeyTunnelAddr},
		{"tunnel port 0", key(tunnel, "outpost.example.com:0"), protocol.ErrKeyTunnelAddr},
		{"tunnel port 70000", key(tunnel, "outpost.example.com:70000"), protocol.ErrKeyTunnelAddr},
		{"tunnel port negative", key(tunnel, "outpost.example.com:-1"), protocol.ErrKeyTunnelAddr},
		{"tunnel port name", key(tunnel, "outpost.example.com:ssh"), protocol.ErrKeyTunnelAddr},
		{"tunnel empty host", key(tunnel, ":8000"), protocol.ErrKeyTunnelAddr},
		{"tunnel empty", key(tunnel, ""), protocol.ErrKeyTunnelAddr},
		{"tunnel unbracketed IPv6", key(tunnel, "2001:db8::1:8000"), protocol.ErrKeyTunnelAddr},

		{"fingerprint without prefix", key(fingerprint, strings.TrimPrefix(testFingerprint, "SHA256:")), protocol.ErrKeyFingerprint},
		{"fingerprint lower-case prefix", key(fingerprint, "sha256:"+strings.TrimPrefix(testFingerprint, "SHA256:")), protocol.ErrKeyFingerprint},
		{"fingerprint MD5", key(fingerprint, "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"), protocol.ErrKeyFingerprint},
		{"fingerprint too short", key(fingerprint, testFingerprint[:len(testFingerprint)-1]), protocol.ErrKeyFingerprint},
		{"fingerprint too long", key(fingerprint, testFingerprint+"A"), protocol.ErrKeyFingerprint},
		{"fingerprint padded", key(fingerprint, testFingerprint+"="), protocol.ErrKeyFingerprint},
		{"fingerprint bad base64", key(fingerprint, testFingerprint[:20]+"!"+testFingerprint[21:]), protocol.ErrKeyFingerprint},
		{"fingerprint empty", key(fingerprint, ""), protocol.ErrKeyFingerprint},

		{"environment negative", key(env, "-1"), protocol.ErrKeyEnvironment},
		{"environment not a number", key(env, "seven"), protocol.ErrKeyEnvironment},
		{"environment overflow", key(env, "18446744073709551616"), protocol.ErrKeyEnvironment},
		{"environment empty", key(env, ""), protocol.ErrKeyEnvironment},
		{"environment fraction", key(env, "7.0"), protocol.ErrKeyEnvironment},
		{"environment with space", key(env, " 7"), protocol.ErrKeyEnvironment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := protocol.ParseEdgeKey(tc.key)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseEdgeKey(%q) = %#v, %v; want %v", tc.key, k, err, tc.want)
			}
			for _, other := range keySentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("%v also matches %v", err, other)
				}
			}
			if k != (protocol.EdgeKey{}) {
				t.Errorf("refused key returned %#v", k)
			}
		})
	}
}

// TestParseEdgeKeyPortOnlyHost: "https://:443" has a Host (":443") but no
// host name; it must be refused.
func TestParseEdgeKeyPortOnlyHost(t *testing.T) {
	for _, u := range []string{"https://:443", "https://:443/edge", "https://user:pw@outpost.example"} {
		if k, err := protocol.ParseEdgeKey(key(0, u)); !errors.Is(err, protocol.ErrKeyServerURL) {
			t.Errorf("server URL %q: %#v, %v; want ErrKeyServerURL", u, k, err)
		}
	}
}
