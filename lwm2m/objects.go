package lwm2m

import (
	"fmt"
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
)

// ObjectLink is one object or object instance a client registered with.
type ObjectLink struct {
	// Path is /object or /object/instance.
	Path format.Path
	// Version is the object version (ver=), "" when not given.
	Version string
}

// maxObjectLinks bounds a registration's object list.
const maxObjectLinks = 512

// parseObjectLinks reads the CoRE link-format payload of a Register or
// Update: the client's objects and instances, possibly below an alternate
// root path announced with rt="oma.lwm2m". It returns the root ("/" when
// not announced) and the links; any link that is not an LwM2M object or
// instance under the root is an error (4.00).
func parseObjectLinks(payload []byte) (string, []ObjectLink, error) {
	links, err := format.ParseLinks(payload)
	if err != nil {
		return "", nil, err
	}
	if len(links) > maxObjectLinks {
		return "", nil, fmt.Errorf("%d links, at most %d", len(links), maxObjectLinks)
	}
	root := "/"
	for _, l := range links {
		if l.Params["rt"] == "oma.lwm2m" {
			root = l.Target
			if !strings.HasPrefix(root, "/") {
				return "", nil, fmt.Errorf("alternate path %q does not start with '/'", root)
			}
			if !strings.HasSuffix(root, "/") {
				root += "/"
			}
			break
		}
	}
	out := make([]ObjectLink, 0, len(links))
	for _, l := range links {
		if l.Params["rt"] == "oma.lwm2m" {
			continue
		}
		rel, ok := strings.CutPrefix(l.Target, root)
		if !ok {
			return "", nil, fmt.Errorf("link %q is not under the root path %q", l.Target, root)
		}
		p, err := format.ParsePath("/" + rel)
		if err != nil {
			return "", nil, fmt.Errorf("link %q: %w", l.Target, err)
		}
		if d := p.Depth(); d < 1 || d > 2 {
			return "", nil, fmt.Errorf("link %q is not an object or object instance", l.Target)
		}
		out = append(out, ObjectLink{Path: p, Version: l.Params["ver"]})
	}
	return root, out, nil
}

// hasObject reports whether the links include the object (as such or by
// one of its instances).
func hasObject(links []ObjectLink, object int32) bool {
	for _, l := range links {
		if l.Path.Object == object {
			return true
		}
	}
	return false
}
