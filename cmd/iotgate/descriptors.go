package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/iotgate/iotgate/activation"
	"github.com/iotgate/iotgate/fdbudget"
	"github.com/iotgate/iotgate/metrics"
	"github.com/iotgate/iotgate/mqtt"
	"github.com/iotgate/iotgate/registry/guard"
)

// DescriptorsConfig shares the process's limit on open files
// (limits.descriptors, README: Abuse controls): reserve is kept for the
// store, the logs and outgoing connections, the rest is the budget of
// accepted connections, split into pools so that a flood on the device
// listeners cannot take the REST API's.
type DescriptorsConfig struct {
	// Reserve is the descriptors kept out of the budget; 0:
	// fdbudget.DefaultReserve of the limit.
	Reserve int `yaml:"reserve"`
	// API is the pool of the REST and activation listeners; 0: a tenth
	// of the budget. The MQTT listeners get the rest, less opsConns.
	API int `yaml:"api"`
}

func (c DescriptorsConfig) validate() error {
	if c.Reserve < 0 || c.API < 0 {
		return errors.New("config: limits.descriptors.reserve and api must not be negative (0 takes the default)")
	}
	return nil
}

// opsConns is the pool of the operator's listeners, metrics.listen and
// debug_listen: a scrape or a profile at a time is their load, and the
// pool keeps them reachable during a flood on the others. (The admin
// socket, mode 0600 in data_dir, has no network peer and is not
// counted.)
const opsConns = 32

// minMQTTConns is the smallest MQTT pool a start accepts: a budget
// below it means the limit is too low or the reserve too high, which
// the operator must hear at start, not from refused devices.
const minMQTTConns = 16

// descriptorPools is the budget of accepted connections and its pools.
// A nil *descriptorPools wraps nothing (the tests' wiring).
type descriptorPools struct {
	budget         *fdbudget.Budget
	mqtt, api, ops *fdbudget.Pool
	plan           descriptorPlan
}

// descriptorPlan is how a limit is cut (descriptorPools, and the start
// log line).
type descriptorPlan struct {
	limit, reserve, budget, mqtt, api, ops int
}

// planDescriptors cuts limit (the soft RLIMIT_NOFILE) by c.
func planDescriptors(limit int, c DescriptorsConfig) (descriptorPlan, error) {
	p := descriptorPlan{limit: limit, reserve: c.Reserve, api: c.API, ops: opsConns}
	if p.reserve == 0 {
		p.reserve = fdbudget.DefaultReserve(limit)
	}
	p.budget = limit - p.reserve
	if p.api == 0 {
		p.api = max(p.budget/10, 16)
	}
	p.mqtt = p.budget - p.api - p.ops
	if p.mqtt < minMQTTConns {
		return p, fmt.Errorf("limits.descriptors: the open-file limit %d less the reserve %d leaves %d descriptors for connections, "+
			"too few for the API's %d, the operator's %d and at least %d for MQTT: raise the limit (ulimit -n, LimitNOFILE=) "+
			"or lower limits.descriptors.reserve or api", limit, p.reserve, p.budget, p.api, p.ops, minMQTTConns)
	}
	return p, nil
}

// newDescriptorPools raises the soft limit on open files to the hard
// one, cuts it by c and logs the figures. Call it once the store is
// open, so that the descriptors it holds are counted in the line.
func newDescriptorPools(c DescriptorsConfig, refusalRate float64, refusalBurst int, log *slog.Logger) (*descriptorPools, error) {
	soft, hard, err := fdbudget.RaiseLimit()
	if err != nil {
		return nil, err
	}
	p, err := planDescriptors(fdbudget.Usable(soft), c)
	if err != nil {
		return nil, err
	}
	b := fdbudget.New(p.budget, log.With("component", "descriptors"), guard.NewThrottle(refusalRate, refusalBurst))
	d := &descriptorPools{budget: b, mqtt: b.Pool("mqtt", p.mqtt), api: b.Pool("api", p.api), ops: b.Pool("operator", p.ops),
		plan: p}
	args := []any{"soft_limit", soft, "hard_limit", hard, "reserve", p.reserve, "budget", p.budget,
		"mqtt", p.mqtt, "api", p.api, "operator", p.ops}
	open, counted := fdbudget.OpenDescriptors()
	if counted {
		args = append(args, "open_now", open)
	}
	log.Info("descriptor budget for accepted connections", args...)
	if counted && open > p.reserve/2 {
		log.Warn("the store and outgoing connections already hold more than half the descriptors reserved for them; "+
			"raise limits.descriptors.reserve", "open_now", open, "reserve", p.reserve)
	}
	return d, nil
}

// reserveCheckEvery is how often watchReserve counts descriptors, and
// reserveWarnEvery how often, at most, it warns.
const (
	reserveCheckEvery = time.Minute
	reserveWarnEvery  = time.Hour
)

// watchReserve warns when the descriptors held besides accepted
// connections pass three quarters of the reserve, until ctx ends. The
// reserve is cut at start, but the store's share grows with it (Badger
// holds one per table and value-log file): past the reserve, the store
// could fail to open its next file. count is fdbudget.OpenDescriptors
// but for tests.
func (d *descriptorPools) watchReserve(ctx context.Context, every, warnEvery time.Duration, count func() (int, bool), log *slog.Logger) {
	if d == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			open, ok := count()
			if !ok {
				return // nothing to count with on this system
			}
			others := open - d.budget.Open()
			if others*4 > d.plan.reserve*3 && now.Sub(warned) >= warnEvery {
				warned = now
				log.Warn("descriptors held besides accepted connections are near the reserve: "+
					"raise limits.descriptors.reserve (and the open-file limit) before the store runs out",
					"held", others, "reserve", d.plan.reserve, "connections", d.budget.Open())
			}
		}
	}
}

// forAPI makes ln draw on the API pool, forOps on the operator's (see
// fdbudget.Pool.Listener); with no pools they return ln.
func (d *descriptorPools) forAPI(ln net.Listener) net.Listener {
	if d == nil {
		return ln
	}
	return d.api.Listener(ln)
}

// apiLimit is the API pool's size; 0 with no pools.
func (d *descriptorPools) apiLimit() int {
	if d == nil {
		return 0
	}
	return d.api.Stats().Limit
}

func (d *descriptorPools) forOps(ln net.Listener) net.Listener {
	if d == nil {
		return ln
	}
	return d.ops.Listener(ln)
}

// forMQTT is mqtt.Options.Descriptors: the MQTT pool, or nil.
func (d *descriptorPools) forMQTT() mqtt.ListenerWrapper {
	if d == nil {
		return nil
	}
	return d.mqtt
}

// forBootstrap is activation.BootstrapOptions.Descriptors on a
// centre: the MQTT pool (the centre serves no other MQTT), or nil.
func (d *descriptorPools) forBootstrap() activation.ListenerWrapper {
	if d == nil {
		return nil
	}
	return d.mqtt
}

// stats is /metrics' reading of the pools.
func (d *descriptorPools) stats() []metrics.ConnectionPool {
	st := d.budget.Stats()
	out := make([]metrics.ConnectionPool, len(st))
	for i, s := range st {
		out[i] = metrics.ConnectionPool{Pool: s.Pool, Limit: s.Limit, Open: s.Open, Refused: s.Refused}
	}
	return out
}
