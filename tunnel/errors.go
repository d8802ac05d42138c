package tunnel

import (
	"errors"
	"fmt"
)

// The errors a caller can test for with errors.Is. Every error the package
// returns wraps at most one of them, with an operation prefix.
var (
	// ErrInactive: the agent closed the tunnel because no request used it
	// for ClientConfig.Inactivity. The agent dials again when the server
	// asks for a tunnel.
	ErrInactive = errors.New("tunnel closed for inactivity")

	// ErrKeepAlive: the peer sent nothing, not even a keepalive answer, for
	// two keepalive periods, so the connection was dropped as dead.
	ErrKeepAlive = errors.New("tunnel peer answered no keepalive")

	// ErrHostKey: the server's tunnel host key does not match the
	// fingerprint the agent pins (the one in its edge key).
	ErrHostKey = errors.New("tunnel host key mismatch")

	// ErrRefused: the server refused the agent's identity key for the
	// environment it claimed (unknown environment, untrusted device, or a
	// key other than the one the environment is bound to).
	ErrRefused = errors.New("tunnel refused by the server")

	// ErrClosed: the tunnel, or the server, was closed on this side.
	ErrClosed = errors.New("tunnel closed")
)

// hostKeyError is ErrHostKey with both fingerprints, worded for the person
// who installed the agent.
type hostKeyError struct{ got, want string }

func (e *hostKeyError) Error() string {
	return fmt.Sprintf("tunnel host key %s does not match the fingerprint in the edge key %s "+
		"(the server's tunnel key changed or something intercepts the connection: check the server, then install a fresh edge key)",
		e.got, e.want)
}

func (e *hostKeyError) Is(target error) bool { return target == ErrHostKey }
