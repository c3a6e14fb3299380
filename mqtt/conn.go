package mqtt

import (
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/iotgate/iotgate/registry"
)

// conn is what the hooks know about one authenticated connection: the
// identity authHook established, the topic spaces that identity may use,
// and, for a gateway, the sub-devices it has logged in. authHook creates
// it before the CONNACK; statusHook drops it when the connection ends.
type conn struct {
	// device is the device the connection speaks for ("" on a
	// registration connection, which speaks for nobody).
	device string
	// project is the device's project: a gateway's sub-devices must be
	// of the same.
	project string
	// self is the device as its dialect's topics name it.
	self owner
	// spaces are the topic spaces of the connection's dialect.
	spaces []*space
	// gateway: the device may log sub-devices in (GATEWAY product,
	// Alibaba dialect).
	gateway bool
	// alibaba: the connection speaks the Alibaba dialect, so the
	// platform's requests reach it as Alink (alidownlink.go).
	alibaba bool
	// registration is the result a registration connection delivers
	// (nil for device connections).
	registration *registrationResult

	mu sync.Mutex
	// session is the registry session of a device connection, set once
	// it is established (see statusHook).
	session registry.Session
	// turn is the device's establishing turn while this connection holds
	// it (see statusHook).
	turn *turn
	// subs are the sub-devices a gateway has logged in, by the owner
	// their topics name.
	subs map[owner]subSession
	// ended: the connection is over; no sub-device may log in anymore.
	ended bool

	budgetOnce sync.Once
	uplink     *uplinkBudget // see budget
}

// subSession is a sub-device logged in through a gateway connection.
type subSession struct {
	device  string
	session registry.Session
}

// route is where a topic leads for a connection: the space, the owner the
// topic names, the device that owner is and the suffix after the prefix.
type route struct {
	space  *space
	owner  owner
	device string
	suffix string
}

// resolve finds the space of topic in which this connection may act, for
// itself or for a logged-in sub-device. It does not allocate.
func (c *conn) resolve(topic string) (route, bool) {
	for _, sp := range c.spaces {
		o, suffix, ok := sp.split(topic)
		if !ok {
			continue
		}
		if o == c.self {
			return route{space: sp, owner: o, device: c.device, suffix: suffix}, true
		}
		if c.gateway && sp.proxied {
			if dev, ok := c.sub(o); ok {
				return route{space: sp, owner: o, device: dev, suffix: suffix}, true
			}
		}
	}
	return route{}, false
}

// mayPublish reports whether the connection may publish to topic, and
// where it leads.
func (c *conn) mayPublish(topic string) (route, uplink, bool) {
	r, ok := c.resolve(topic)
	if !ok {
		return r, notUplink, false
	}
	kind := r.space.classify(r.suffix)
	return r, kind, kind != notUplink
}

// mayReceive reports whether the connection may subscribe to filter.
func (c *conn) mayReceive(filter string) bool {
	r, ok := c.resolve(filter)
	return ok && r.space.mayReceive(r.suffix)
}

// sub returns the device id of a logged-in sub-device.
func (c *conn) sub(o owner) (string, bool) {
	c.mu.Lock()
	s, ok := c.subs[o]
	c.mu.Unlock()
	return s.device, ok
}

// conns is the table of live authenticated connections the hooks share,
// with an index of the sub-devices logged in through gateways.
type conns struct {
	byClient sync.Map // *mochi.Client → *conn
	proxied  sync.Map // sub-device id → proxy
}

// proxy is the gateway connection a sub-device is logged in through.
type proxy struct {
	conn  *conn
	owner owner
}

func (t *conns) put(cl *mochi.Client, c *conn) { t.byClient.Store(cl, c) }

// get returns the connection's state; nil for a client authHook has not
// admitted (there is none: mochi asks the hooks only about admitted ones).
func (t *conns) get(cl *mochi.Client) *conn {
	if v, ok := t.byClient.Load(cl); ok {
		return v.(*conn)
	}
	return nil
}

// remove drops a connection and returns it, marked ended, with the
// sub-devices it had logged in (now logged out of it).
func (t *conns) remove(cl *mochi.Client) (*conn, map[owner]subSession) {
	v, ok := t.byClient.LoadAndDelete(cl)
	if !ok {
		return nil, nil
	}
	c := v.(*conn)
	c.mu.Lock()
	c.ended = true
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for o, s := range subs {
		t.proxied.CompareAndDelete(s.device, proxy{conn: c, owner: o})
	}
	return c, subs
}

// login records a sub-device logged in through a gateway connection. It
// returns the session it replaces (through this gateway), if any, and
// false if the connection has ended meanwhile.
func (t *conns) login(c *conn, o owner, s subSession) (old subSession, replaced, ok bool) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return subSession{}, false, false
	}
	if c.subs == nil {
		c.subs = make(map[owner]subSession)
	}
	old, replaced = c.subs[o]
	c.subs[o] = s
	c.mu.Unlock()
	t.proxied.Store(s.device, proxy{conn: c, owner: o})
	return old, replaced, true
}

// logout removes a sub-device from its gateway connection.
func (t *conns) logout(c *conn, o owner) (subSession, bool) {
	c.mu.Lock()
	s, ok := c.subs[o]
	delete(c.subs, o)
	c.mu.Unlock()
	if ok {
		t.proxied.CompareAndDelete(s.device, proxy{conn: c, owner: o})
	}
	return s, ok
}

// gatewayOf returns the gateway connection a sub-device is logged in
// through.
func (t *conns) gatewayOf(deviceID string) (proxy, bool) {
	v, ok := t.proxied.Load(deviceID)
	if !ok {
		return proxy{}, false
	}
	return v.(proxy), true
}
