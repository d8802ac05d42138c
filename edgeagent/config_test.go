package edgeagent_test

import (
	"path/filepath"
	"strings"
	"testing"

	"outpost/edgeagent"
	"outpost/internal/testenv"
	"outpost/protocol"
)

// TestConfigClientCert: EDGE_CLIENT_CERT and EDGE_CLIENT_KEY go together and
// must load; each problem is reported with the variables' values, alongside
// the other config errors.
func TestConfigClientCert(t *testing.T) {
	cert := testenv.NewCA(t, "fleet CA").Issue(t, "ship-7")
	missing := filepath.Join(t.TempDir(), "missing.key")
	key := protocol.EdgeKey{ServerURL: "https://outpost.test:9443", TunnelAddr: "outpost.test:8000",
		TunnelFingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", EnvironmentID: 1}.String()
	for _, tc := range []struct {
		name       string
		cert, key  string
		wantErr    []string // substrings of the error; none: no error
		wantLoaded bool
	}{
		{name: "neither"},
		{name: "both", cert: cert.CertFile, key: cert.KeyFile, wantLoaded: true},
		{name: "cert only", cert: cert.CertFile, wantErr: []string{"EDGE_CLIENT_CERT=", "set both"}},
		{name: "key only", key: cert.KeyFile, wantErr: []string{"EDGE_CLIENT_KEY=", "set both"}},
		{name: "missing key file", cert: cert.CertFile, key: missing, wantErr: []string{missing, "no such file"}},
		{name: "key and cert swapped", cert: cert.KeyFile, key: cert.CertFile, wantErr: []string{"EDGE_CLIENT_CERT=" + `"` + cert.KeyFile + `"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{
				"EDGE": "1", "EDGE_ASYNC": "1", "EDGE_KEY": key, "OUTPOST_DATA_DIR": t.TempDir(),
				"EDGE_CLIENT_CERT": tc.cert, "EDGE_CLIENT_KEY": tc.key,
			}
			c, err := edgeagent.ConfigFromEnv(func(k string) string { return env[k] })
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatalf("error: %v", err)
			}
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not say %q", err, want)
				}
			}
			if loaded := c.ClientCert != nil; loaded != tc.wantLoaded {
				t.Errorf("client certificate loaded: %v, want %v", loaded, tc.wantLoaded)
			}
		})
	}

	// Reported with the other config errors, not instead of them.
	_, err := edgeagent.ConfigFromEnv(func(k string) string {
		return map[string]string{"EDGE_CLIENT_CERT": cert.CertFile, "OUTPOST_DATA_DIR": t.TempDir()}[k]
	})
	for _, want := range []string{"EDGE=", "EDGE_KEY is empty", "EDGE_CLIENT_CERT="} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

// A relative OUTPOST_DATA_DIR (make run passes data/agent) is made absolute
// when the configuration is loaded: Compose and the job runner need it so.
func TestConfigDataDirAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	key := protocol.EdgeKey{ServerURL: "https://outpost.test:9443", TunnelAddr: "outpost.test:8000",
		TunnelFingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", EnvironmentID: 1}.String()
	env := map[string]string{"EDGE": "1", "EDGE_KEY": key, "OUTPOST_DATA_DIR": "data/agent"}
	c, err := edgeagent.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data", "agent"); c.DataDir != want {
		t.Fatalf("DataDir = %q, want %q", c.DataDir, want)
	}
}
