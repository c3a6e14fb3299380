package registry

import (
	"slices"
	"sync"
)

// eventSignal tells the readers of a project's events that some were
// committed, so that one that has caught up waits for them instead of
// polling. A notification closes the channel a project's readers got,
// and the next wait makes a new one: a commit nobody waits for costs a
// map lookup.
type eventSignal struct {
	mu      sync.Mutex
	waiting map[string]chan struct{} // by project
}

func (s *eventSignal) wait(project string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.waiting[project]
	if ch == nil {
		if s.waiting == nil {
			s.waiting = make(map[string]chan struct{})
		}
		ch = make(chan struct{})
		s.waiting[project] = ch
	}
	return ch
}

// notify wakes the readers of projects; none: of every project.
func (s *eventSignal) notify(projects ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(projects) == 0 {
		for p, ch := range s.waiting {
			close(ch)
			delete(s.waiting, p)
		}
		return
	}
	for _, p := range projects {
		if ch := s.waiting[p]; ch != nil {
			close(ch)
			delete(s.waiting, p)
		}
	}
}

// EventsCommitted returns a channel closed once events of project are
// committed after the call: by this node's writes, or by another node's
// as NotifyEvents reports. A reader takes it before it reads the stream,
// so a commit between its read and its wait is not missed.
func (r *Registry) EventsCommitted(project string) <-chan struct{} {
	return r.eventSignal.wait(project)
}

// NotifyEvents wakes the readers waiting on EventsCommitted for project
// ("": every project): for a cluster's bus, when another node has
// committed events.
func (r *Registry) NotifyEvents(project string) {
	if project == "" {
		r.eventSignal.notify()
		return
	}
	r.eventSignal.notify(project)
}

// eventsHinted wakes the readers of the projects whose events another
// node committed (Options.EventHints), and the relay when another node
// stored events in the outbox (relayHint); nil: hints may have been lost,
// so every reader reads and the relay looks at the outbox.
func (r *Registry) eventsHinted(projects []string) {
	if projects == nil {
		r.relay.poke()
		r.eventSignal.notify()
		return
	}
	rest := projects
	if i := slices.Index(projects, relayHint); i >= 0 {
		r.relay.poke()
		rest = slices.Delete(slices.Clone(projects), i, i+1)
		if len(rest) == 0 {
			return
		}
	}
	r.eventSignal.notify(rest...)
}

// eventKeyProject is the project of an eventKey: between the family and
// the position, each after a separator.
func eventKeyProject(k []byte) []byte { return k[len(famEvent)+1 : len(k)-9] }
