// Package e2e holds end-to-end tests that run outpost-server and
// outpost-agent as processes against the real Docker engine. They are tagged
// `integration`: `make test` runs them, `make test-short` does not.
package e2e
