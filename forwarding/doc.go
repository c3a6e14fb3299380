// Package forwarding pushes a project's events to the destinations of its
// routing rules (IoTDA's data forwarding). Each rule action gets one
// worker, which reads the project's event stream through the action's own
// event consumer, keeps the events its rule selects, delivers them in
// per-device order over the action's channel, and acknowledges the cursor
// only once the destination has acknowledged every selected event before
// it: delivery is at least once, and a restart resumes from the last
// acknowledged cursor. Channels (HTTP, NATS, Kafka) are adapters in
// sub-packages, given to the engine by the program that wires it.
package forwarding
