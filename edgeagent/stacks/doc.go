// Package stacks deploys, removes and inspects edge stacks: compose projects
// run on the device's local Docker engine through Compose's own Go library
// (github.com/docker/compose/v5/pkg/compose), the code behind
// `docker compose up -d` and `down`, not a shell-out to it.
//
// Compose runs in the compose helper (HelperName, cmd/outpost-compose,
// package stacks/compose), a child process started for each Deploy and for
// each Remove that finds something to remove, which exits when done. This
// package, which the long-lived agent links, does not import Compose or the
// Docker CLI: linked into the agent they held about 18 of an idle agent's
// 40 MiB of resident memory, mostly the binary's pages their package
// initialization touched, and what a deploy allocated stayed (see
// HelperName).
//
// A Runner is built once per agent from the environment (DOCKER_HOST and the
// other variables the docker CLI reads). Deploy takes a Spec: a project
// name, the compose YAML, its variables, registry credentials and a working
// directory. Status judges a project from its containers as the engine
// reports them, in this process.
//
// # Caveats
//
//   - Deploy is idempotent: the same Spec again, also after the agent was
//     killed mid-Deploy, converges to one container per service replica and
//     recreates only services whose configuration changed. It returns once
//     containers are started, not once they are healthy: poll Status.
//   - A failed Deploy leaves the running containers alone when the Spec or
//     compose file is invalid (ErrInvalid) or an image cannot be pulled
//     (ErrImage): both are checked, and every missing image pulled, before
//     any container is touched. A failure later, while containers are being
//     replaced, can leave the project half updated; deploy again.
//   - Images are pulled only when missing from the device (Compose's default
//     pull_policy, "missing"); a compose file that says pull_policy: always
//     gets a pull on every Deploy. Services must name an image: nothing is
//     built on the device.
//   - Credentials (Spec.Auth) go to the helper on its standard input, never
//     on its command line or in its environment, and live in memory only
//     there, in a Docker CLI configuration with no file behind it. The
//     device's ~/.docker/config.json logins and credential helpers are not
//     used.
//   - Compose file variables come from Spec.Env alone: the agent's own
//     environment is neither read by the compose file nor changed by it.
//   - Without the helper (ErrNoHelper) Deploy fails, and so does Remove of
//     a project that has containers or networks; Status works.
//   - A cancelled Deploy or Remove sends the helper's process group
//     SIGTERM, and SIGKILL 15 s later; when the helper exits, what it left
//     in its group is killed, and the Runner stops reading its output 2 s at
//     most. The helper gets SIGKILL when the agent dies (its children do
//     not). All of this on Linux; elsewhere a cancel kills the helper alone.
//   - The Runner and the helper pick the engine alike, as the agent's
//     snapshots do: DOCKER_HOST (with DOCKER_TLS_VERIFY, DOCKER_CERT_PATH),
//     else the default socket. Docker CLI contexts (DOCKER_CONTEXT, the
//     current context of ~/.docker/config.json) are ignored: name the
//     engine with DOCKER_HOST.
//   - Status counts a service ready when its containers run and, where a
//     health check is declared, are healthy; a one-shot container that
//     exited 0 with restart "no" or "on-failure" counts as ready. The full
//     rules are on Runner.Status. Which services to expect is remembered from
//     the last successful Deploy in memory; after an agent restart it comes
//     from the containers' com.docker.compose.* labels alone.
//   - Remove removes containers and networks, never named volumes. After a
//     Deploy whose up failed or was cancelled, the engine may still be
//     creating containers the client gave up on: Remove then looks again for
//     up to 6 s, so it takes at least a second longer.
//   - Deploy and Remove of one project are serialized by the Runner; two
//     Runners (or a person running docker compose) on the same project are
//     not.
//   - The helper's log (JSON lines on its standard error) comes out of the
//     Runner's logger, with one "compose helper done" line per run giving
//     its duration and peak resident memory (max_rss_kib).
package stacks
