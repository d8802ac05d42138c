//go:build !unix

package agentapi_test

import "testing"

func mkfifo(t *testing.T, _ string) {
	t.Skip("named pipes are a unix thing")
}
