// Package agentapi is the agent's HTTP API, the one the server reaches
// through the tunnel in standard mode. It is a plain http.Handler:
//
//	GET    /v2/ping                      204
//	GET    /v2/host/info                 HostInfo as JSON
//	GET    /v2/browse/ls?volume=&path=   the entries of a directory in a volume
//	GET    /v2/browse/get?volume=&path=  a file of a volume (ranges supported)
//	POST   /v2/browse/put?volume=&path=  upload (PUT too): multipart field "file", or the raw body
//	DELETE /v2/browse/delete?volume=&path=
//	POST   /v2/browse/rename?volume=&path=&newPath=
//	GET    /v2/websocket/exec?id=&cmd=&tty=   run a command, stdio over a websocket
//	GET    /v2/websocket/attach?id=&logs=     a running container's stdio over a websocket
//	*      any path not under /v2        the Docker Engine API, proxied
//
// Every answer carries HeaderAgentVersion and HeaderAPIVersion. Errors of the
// /v2 paths are {"message": "..."} with a fitting status; an unknown /v2 path
// is 404.
//
// # Caveats
//
//   - The passthrough is the whole Engine API, unchanged: path (versioned or
//     not), query, body, the engine's status, headers and errors, plus the two
//     agent headers. Anyone who reaches this handler controls the engine; the
//     handler does no authentication and accepts websockets from any Origin,
//     so it must only ever be served through the tunnel, whose server side
//     authenticates. No Engine API path is /v2 or under it (versions are
//     /v1.NN), so the two never collide.
//   - Hijacked Engine API calls (attach, exec start with Upgrade: tcp) pass
//     through with half-close both ways: a client's CloseWrite reaches the
//     engine as stdin EOF and the output still flows back. That needs a
//     connection with CloseWrite under the handler (TCP, unix, or a tunnel
//     stream that has it); without one, the first side to finish ends both.
//     Streams (logs follow, events, stats) are flushed on every write. A
//     hijack without Upgrade (clients older than API 1.23 or so, which expect
//     a 200 and a raw stream both ways) gets its output but not its stdin.
//     Hop-by-hop headers (Connection, Keep-Alive, ...) are dropped, as any
//     proxy does.
//   - /v2/browse serves only VolumesRoot/NAME/_data, through an os.Root:
//     "..", absolute paths and symlinks that lead outside the volume are
//     refused (400 for a path that is wrong on its face, 403 for one that
//     escapes when resolved, e.g. a symlink to /etc). Paths are relative to
//     the volume, slash-separated, empty for its root. A symlink with an
//     absolute target is refused even if it means a place inside the
//     volume as a container sees it.
//   - An upload is bounded by Config.MaxUpload (413 past it) and written to a
//     temporary file beside its target, synced and renamed: readers see the
//     old file or the whole new one. Uploaded files belong to the agent's
//     user; a replaced file keeps its permission bits. Delete removes a
//     directory with its contents; rename refuses an existing target.
//   - A websocket session starts its exec only once the websocket is up. The
//     client's close frame half-closes stdin and does not end the session:
//     output goes on, and the agent's own close frame, sent when the output
//     ends, carries "exit N" (or "detached" if the process outlives its
//     stream) and answers the client's. A client that drops the connection
//     leaves its exec running without stdin: the engine cannot kill an exec.
//     Without a tty, stdout and stderr arrive interleaved, undistinguished.
//   - Close cancels every request in flight, passthrough streams and hijacked
//     connections included, and waits for the websocket sessions to end.
package agentapi
