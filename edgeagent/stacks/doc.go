// Package stacks deploys, removes and inspects edge stacks: compose projects
// run on the device's local Docker engine through Compose's own Go library
// (github.com/docker/compose/v5/pkg/compose), the code behind
// `docker compose up -d`, `down` and `ps`, not a shell-out to it.
//
// A Runner is built once per agent from the environment (DOCKER_HOST and the
// other variables the docker CLI reads). Deploy takes a Spec: a project
// name, the compose YAML, its variables, registry credentials and a working
// directory. Status judges a project from its containers as the engine
// reports them.
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
//   - Credentials (Spec.Auth) live in memory only, in a Docker CLI
//     configuration with no file behind it, built per Deploy. The device's
//     ~/.docker/config.json logins and credential helpers are not used.
//   - Compose file variables come from Spec.Env alone: the agent's own
//     environment is neither read by the compose file nor changed by it.
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
//   - Compose logs some warnings through logrus, a process-wide logger, and
//     docker/cli sets logrus's level when the Runner is made.
package stacks
