package lwm2m

import (
	"fmt"
	"strings"
	"sync"

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

// regLinks is what the payload of a Register or Update says.
type regLinks struct {
	// Root is the alternate path announced with rt="oma.lwm2m", "/" if none.
	Root    string
	Objects []ObjectLink
	// Formats are the content formats declared with ct on the root link
	// (LwM2M 1.1 TS Core §6.2.1: </>;ct=110 or </>;ct="110 112"); empty
	// when the client declared none.
	Formats format.Set
}

// parseObjectLinks reads the CoRE link-format payload of a Register or
// Update: the client's objects and instances, possibly below an alternate
// root path announced with rt="oma.lwm2m", and the formats declared on
// the root link (the rt="oma.lwm2m" one, else a link to the root itself,
// </>). Any other link that is not an LwM2M object or instance under the
// root, or a malformed ct, is an error (4.00).
func parseObjectLinks(payload []byte) (regLinks, error) {
	out := regLinks{Root: "/"}
	links, err := format.ParseLinks(payload)
	if err != nil {
		return out, err
	}
	if len(links) > maxObjectLinks {
		return out, fmt.Errorf("%d links, at most %d", len(links), maxObjectLinks)
	}
	rootLink := -1
	for i, l := range links {
		if l.Params["rt"] == "oma.lwm2m" {
			out.Root, rootLink = l.Target, i
			if !strings.HasPrefix(out.Root, "/") {
				return out, fmt.Errorf("alternate path %q does not start with '/'", out.Root)
			}
			if !strings.HasSuffix(out.Root, "/") {
				out.Root += "/"
			}
			break
		}
	}
	if rootLink < 0 {
		for i, l := range links {
			if l.Target == "/" {
				rootLink = i
				break
			}
		}
	}
	if rootLink >= 0 {
		if ct, ok := links[rootLink].Params["ct"]; ok {
			if out.Formats, err = format.ParseContentFormats(ct); err != nil {
				return out, fmt.Errorf("root link %q: %w", links[rootLink].Target, err)
			}
		}
	}
	out.Objects = make([]ObjectLink, 0, len(links))
	for i, l := range links {
		if i == rootLink {
			continue
		}
		rel, ok := strings.CutPrefix(l.Target, out.Root)
		if !ok {
			return out, fmt.Errorf("link %q is not under the root path %q", l.Target, out.Root)
		}
		p, err := format.ParsePath("/" + rel)
		if err != nil {
			return out, fmt.Errorf("link %q: %w", l.Target, err)
		}
		if d := p.Depth(); d < 1 || d > 2 {
			return out, fmt.Errorf("link %q is not an object or object instance", l.Target)
		}
		out.Objects = append(out.Objects, ObjectLink{Path: p, Version: l.Params["ver"]})
	}
	return out, nil
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

// maxLinkSets bounds the distinct payloads linkSets keeps.
const maxLinkSets = 4096

// linkSets parses the object links of Register and Update payloads and
// shares the result between identical payloads: a fleet's devices of one
// model send the same links, so a million registrations hold a few
// parsed lists instead of a million, and a re-registration parses
// nothing. The parsed lists are never modified after parsing. Node-local
// and bounded: past maxLinkSets distinct payloads, new ones are parsed
// each time.
type linkSets struct {
	mu sync.RWMutex
	m  map[string]regLinks
}

func newLinkSets() *linkSets { return &linkSets{m: make(map[string]regLinks)} }

func (c *linkSets) parse(payload []byte) (regLinks, error) {
	c.mu.RLock()
	l, ok := c.m[string(payload)]
	c.mu.RUnlock()
	if ok {
		return l, nil
	}
	l, err := parseObjectLinks(payload)
	if err != nil {
		return l, err
	}
	c.mu.Lock()
	if len(c.m) < maxLinkSets {
		c.m[string(payload)] = l
	}
	c.mu.Unlock()
	return l, nil
}
