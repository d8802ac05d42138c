// Package testenv holds shared test setup: connecting to the local Docker
// engine, making a busybox image without a registry, a certificate authority
// and client certificates for mTLS tests, and polling for a condition with a
// deadline.
//
// Tests that need a real component call a Require helper first: when the
// component is missing the test is skipped with a message saying what is
// missing, except under CI (the CI environment variable is non-empty), where a
// missing component fails the test, so CI cannot pass by skipping everything.
//
// EnsureBusybox and the tar and import helpers take no testing.TB, so tools
// such as internal/tools/capture use the same image.
//
// # Caveats
//
//   - No image can be pulled on the project's machines: images are imported
//     from a tar built in memory from the host's /bin/busybox (Debian's
//     busybox-static package).
//   - The busybox image is left on the engine after tests, on purpose: later
//     runs and other packages reuse it. Containers a test creates are the
//     test's to remove.
//   - Tests never sleep to wait: they poll with Eventually.
package testenv
