// Package compose is the compose helper's work: the Compose operations of
// package stacks, run with Compose's own Go library
// (github.com/docker/compose/v5/pkg/compose), the code behind
// `docker compose up -d` and `down`, in a process of their own
// (cmd/outpost-compose), so that the agent never links Compose.
//
// Main serves one stacks.Request read from its standard input: "up" loads
// and validates the Spec's compose file, pulls the missing images and runs
// up; "down" runs one down. It answers with a stacks.Result on its standard
// output and logs JSON lines on its standard error, which the agent relays
// into its own log.
//
// # Caveats
//
//   - Main picks its engine as the agent does (client.FromEnv: DOCKER_HOST,
//     DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_API_VERSION, which it
//     inherits from the agent, else the default socket). Docker CLI
//     contexts (DOCKER_CONTEXT, `docker context use`) are ignored, so
//     that the agent's Status and Remove see what the helper deployed.
//   - Credentials (Spec.Auth) live in memory only, in a Docker CLI
//     configuration with no file behind it. The device's
//     ~/.docker/config.json logins and credential helpers are not used.
//   - Compose file variables come from Spec.Env alone: the helper's own
//     environment is neither read by the compose file nor changed by it.
//   - SIGTERM (a cancelled Deploy) cancels the operation; Main still
//     answers, with the error Compose returned.
//   - Compose logs some warnings through logrus, a process-wide logger;
//     docker/cli sets logrus's level when the CLI is made.
package compose
