package protocol

import (
	"errors"
	"fmt"
)

// Sentinel errors of the package. Each error the package returns matches one
// of these with errors.Is.
var (
	// ErrLimit: a body broke one of the bounds in limits.go (see LimitError).
	ErrLimit = errors.New("protocol limit exceeded")
	// ErrMalformed: a body is not valid CBOR or zstd, or does not fit the message.
	ErrMalformed = errors.New("malformed body")
	// ErrUnknownDictionary: a zstd frame names a dictionary this build lacks.
	ErrUnknownDictionary = errors.New("zstd frame uses an unknown dictionary; upgrade the agent or the server so both share a dictionary")
	// ErrUnsupportedVersion: a message carries a protocol version this side
	// does not speak (see VersionError).
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	// ErrContentEncoding: the Content-Encoding is neither zstd nor absent.
	ErrContentEncoding = errors.New("unsupported content encoding")

	// Edge key errors, one per malformed form.
	ErrKeyEmpty       = errors.New("edge key is empty")
	ErrKeyEncoding    = errors.New("edge key is not unpadded base64")
	ErrKeyFields      = errors.New("edge key must have 4 or 5 fields: server_url|tunnel_addr|tunnel_fingerprint|environment_id[|enrollment_secret]")
	ErrKeyServerURL   = errors.New("edge key server URL must be an absolute https:// URL with a host and no credentials")
	ErrKeyTunnelAddr  = errors.New("edge key tunnel address must be host:port")
	ErrKeyFingerprint = errors.New("edge key tunnel fingerprint must be SHA256: followed by 43 base64 characters")
	ErrKeyEnvironment = errors.New("edge key environment ID must be a non-negative integer")
	ErrKeySecret      = errors.New("edge key enrollment secret must be 32 bytes in unpadded URL-safe base64")
)

// LimitError reports which bound a body broke.
type LimitError struct {
	Limit string // name of the constant in limits.go
	Max   int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("protocol limit exceeded: %s (%d)", e.Limit, e.Max)
}

// Is makes a LimitError match ErrLimit.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// VersionError reports a protocol version this side does not speak.
type VersionError struct {
	Got uint
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("protocol version %d is not supported (this side speaks %d to %d); upgrade the older side", e.Got, MinVersion, Version)
}

// Is makes a VersionError match ErrUnsupportedVersion.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }
