package registry

import "github.com/iotgate/iotgate/registry/kv"

// Reader and Writer are the storage seam's (see registry/kv); the domain
// reads and writes only through them.
type (
	Reader = kv.Reader
	Writer = kv.Writer
)
