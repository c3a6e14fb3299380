// Command iotgate-fleet simulates a fleet of devices against iotgate (or,
// for comparison, against a baseline server) and measures what the
// server sustains.
//
// For each protocol asked for it creates the devices through the REST
// API, connects them (MQTT or MQTTS with secret authentication, LwM2M
// over CoAP or over DTLS with the secret as PSK) at a target rate or as
// fast as the server accepts, holds them with periodic uplinks while
// commands are sent to them, disconnects them, reconnects them all at
// once (the fleet coming back after an outage), and finally disconnects
// and optionally deletes them. It prints a progress line while it runs
// and a JSON summary at the end: rates, latency percentiles, failures by
// reason, and the server's memory and goroutines per device at the
// plateau.
//
// Sockets are spread over many 127.x.y.z source addresses; a fleet bigger
// than -per-process devices is split over child processes (this program
// run as "iotgate-fleet worker"), since one process may hold only as many
// sockets as its open-file limit allows. Every loop is bounded in count
// and time, and targets must be loopback addresses unless -allow-remote.
//
// Subcommands: "passwords" writes a mosquitto password file for the
// fleet's MQTT devices; "baseline" runs the bare servers test/bench/run.sh
// compares iotgate with (mochi-mqtt allowing everyone, a go-coap /rd
// handler, a pion/dtls PSK echo server).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "worker":
		err = workerMain()
	case len(os.Args) > 1 && os.Args[1] == "passwords":
		err = passwordsMain(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "baseline":
		err = baselineMain(os.Args[2:])
	default:
		err = fleetMain(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "iotgate-fleet:", err)
		os.Exit(1)
	}
}

// options are the fleet's flags.
type options struct {
	label                       string
	api, project, token         string
	targets                     map[string]*string
	protocols                   string
	n                           int
	prefix, seed, timestamp     string
	create, deleteAfter         bool
	createConns                 int
	concurrency                 int
	rate                        float64
	hold, interval              time.Duration
	qos                         int
	commands, commandConns      int
	reconnect, graceful         bool
	rounds                      int
	timeout                     time.Duration
	keepalive, lifetime         int
	caFile                      string
	handshakeOnly               bool
	spread, perProcess, workers int
	sharedSockets               bool
	serverPID                   int
	debugURL                    string
	pprofDir                    string
	pprofSeconds                int
	settle                      time.Duration
	gc                          bool
	out                         string
	allowRemote                 bool
	deadline                    time.Duration
	forward                     string
	forwardWait                 time.Duration
	kafkaPartitions             int
}

func parseOptions(args []string) (*options, error) {
	o := &options{targets: map[string]*string{}}
	fs := flag.NewFlagSet("iotgate-fleet", flag.ContinueOnError)
	fs.StringVar(&o.label, "label", "iotgate", "name of the run in the summary (e.g. the server under test)")
	fs.StringVar(&o.api, "api", "http://127.0.0.1:8080", `iotgate REST API base URL; "" for a server without one (baselines: no create, delete or commands)`)
	fs.StringVar(&o.project, "project", "", "project_id of the API credential")
	fs.StringVar(&o.token, "token", "", "X-Auth-Token of the API credential")
	o.targets[protoMQTT] = fs.String("mqtt", "127.0.0.1:1883", "MQTT address")
	o.targets[protoMQTTS] = fs.String("mqtts", "127.0.0.1:8883", "MQTTS address")
	o.targets[protoCoAP] = fs.String("coap", "127.0.0.1:5683", "LwM2M CoAP (NoSec) address")
	o.targets[protoDTLS] = fs.String("dtls", "127.0.0.1:5684", "LwM2M CoAP over DTLS address")
	fs.StringVar(&o.protocols, "protocols", protoMQTT, "comma-separated protocols to run, one after another: "+strings.Join(allProtocols, ","))
	fs.IntVar(&o.n, "n", 1000, "devices per protocol")
	fs.StringVar(&o.prefix, "prefix", "fleet", "node id prefix; products are {prefix}-mqtt and {prefix}-nb")
	fs.StringVar(&o.seed, "seed", "iotgate-fleet", "key from which device secrets are derived (HMAC-SHA256 of the device id)")
	fs.StringVar(&o.timestamp, "timestamp", time.Now().UTC().Format("2006010215"), "MQTT ClientId timestamp (YYYYMMDDHH; sign_type 0, so any hour works)")
	fs.BoolVar(&o.create, "create", true, "create the devices through the API first (ignored without -api)")
	fs.BoolVar(&o.deleteAfter, "delete", false, "delete the devices through the API at the end")
	fs.IntVar(&o.createConns, "create-concurrency", 64, "concurrent API clients creating or deleting devices")
	fs.IntVar(&o.concurrency, "concurrency", 256, "connects in flight at once (whole fleet)")
	fs.Float64Var(&o.rate, "rate", 0, "connects started per second (whole fleet); 0: as fast as the server accepts")
	fs.DurationVar(&o.hold, "hold", 5*time.Second, "how long the connected fleet is held")
	fs.DurationVar(&o.interval, "uplink-interval", 0, "each device sends an uplink this often while held; 0: none")
	fs.IntVar(&o.qos, "qos", 1, "MQTT uplink QoS (0 or 1; 1 counts the server's acknowledgements)")
	fs.IntVar(&o.commands, "commands", 0, "commands sent through the API to random held devices")
	fs.IntVar(&o.commandConns, "command-concurrency", 8, "commands in flight at once")
	fs.BoolVar(&o.reconnect, "reconnect", true, "after the first disconnect, reconnect the whole fleet at once and measure that storm too")
	fs.IntVar(&o.rounds, "rounds", 1, "reconnect storms (each followed by a disconnect); the summary's reconnect is the median one by rate")
	fs.BoolVar(&o.graceful, "graceful", true, "disconnect as a device that shuts down does (MQTT DISCONNECT, LwM2M De-register); false: drop the sockets, as an outage does")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on one connect, request or disconnect")
	fs.IntVar(&o.keepalive, "keepalive", 300, "MQTT keepalive, seconds (iotgate accepts 30-1200)")
	fs.IntVar(&o.lifetime, "lifetime", 3600, "LwM2M registration lifetime, seconds")
	fs.StringVar(&o.caFile, "cafile", "", "CA that signed the MQTTS server certificate; empty: the certificate is not verified")
	fs.BoolVar(&o.handshakeOnly, "handshake-only", false, "dtls: handshake without registering (for a bare DTLS server)")
	fs.IntVar(&o.spread, "spread", 4096, "loopback source addresses the sockets are spread over (127.1.0.1 upwards); 0: the kernel's choice")
	fs.IntVar(&o.perProcess, "per-process", 15000, "devices per worker process (each below the open-file limit)")
	fs.BoolVar(&o.sharedSockets, "shared-sockets", false, "lwm2m (NoSec) only: simulate -spread devices per socket, each sending from its own 127.x.y.z address (IP_PKTINFO), with a small state machine instead of a client each (about 100 bytes a device against 15 KiB), so that one machine holds a million registrations; -per-process then only splits the CPU")
	fs.IntVar(&o.workers, "workers", 0, "worker processes per protocol; 0: enough for -per-process")
	fs.IntVar(&o.serverPID, "server-pid", 0, "pid of the server, to read its resident memory from /proc")
	fs.StringVar(&o.debugURL, "debug-url", "", "base URL of the server's /debug/vars and /debug/pprof (iotgate's debug_listen)")
	fs.StringVar(&o.pprofDir, "pprof", "", "save server CPU profiles of the create and connect storms and heap profiles at the plateau here (needs -debug-url)")
	fs.IntVar(&o.pprofSeconds, "pprof-seconds", 5, "length of each CPU profile")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the connect storm before sampling the server's memory")
	fs.BoolVar(&o.gc, "gc", false, "make the server collect garbage (through -debug-url) before sampling its memory at the plateau")
	fs.StringVar(&o.out, "json", "-", `write the JSON summary here ("-": standard output)`)
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow targets that are not loopback addresses")
	fs.DurationVar(&o.deadline, "deadline", 30*time.Minute, "bound on the whole run")
	fs.StringVar(&o.forward, "forward", "", `receiver mode (MQTT): "http" or "kafka" starts that destination on loopback in this process (kfake for Kafka), routes the fleet's property reports to it through the API for the hold, and reports forwarded/s and added latency; "": no rule (the baseline)`)
	fs.DurationVar(&o.forwardWait, "forward-wait", 60*time.Second, "after the hold, wait at most this long for the pushes still due")
	fs.IntVar(&o.kafkaPartitions, "kafka-partitions", 8, "-forward kafka: partitions of the topic")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: iotgate-fleet [flags]\n       iotgate-fleet passwords [flags]   (mosquitto password file)\n       iotgate-fleet baseline mochi|coap|dtls [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.n < 1 {
		return nil, errors.New("-n must be at least 1")
	}
	if o.perProcess < 1 {
		return nil, errors.New("-per-process must be at least 1")
	}
	for _, p := range o.protocolList() {
		if _, ok := o.targets[p]; !ok {
			return nil, fmt.Errorf("unknown protocol %q (have %s)", p, strings.Join(allProtocols, ", "))
		}
		if err := checkLoopback("-"+p, *o.targets[p], o.allowRemote); err != nil {
			return nil, err
		}
	}
	for _, u := range []string{o.api, o.debugURL} {
		if u == "" {
			continue
		}
		host := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
		host, _, _ = strings.Cut(host, "/")
		if !strings.Contains(host, ":") {
			host += ":80"
		}
		if err := checkLoopback("URL", host, o.allowRemote); err != nil {
			return nil, err
		}
	}
	if o.api != "" && (o.project == "" || o.token == "") {
		return nil, errors.New("-api needs -project and -token")
	}
	if o.sharedSockets {
		for _, p := range o.protocolList() {
			if p != protoCoAP {
				return nil, fmt.Errorf("-shared-sockets simulates NoSec LwM2M (%s) only, not %s", protoCoAP, p)
			}
		}
		if o.spread < 1 {
			return nil, errors.New("-shared-sockets needs -spread of at least 1")
		}
	}
	if o.forward != "" {
		if o.forward != forwardHTTP && o.forward != forwardKafka {
			return nil, fmt.Errorf("-forward %q: want %s or %s", o.forward, forwardHTTP, forwardKafka)
		}
		if o.api == "" {
			return nil, errors.New("-forward needs -api (the routing rule is created through it)")
		}
		for _, p := range o.protocolList() {
			if isLwM2M(p) {
				return nil, fmt.Errorf("-forward measures MQTT uplinks; %s is not MQTT", p)
			}
		}
	}
	return o, nil
}

func (o *options) protocolList() []string {
	var out []string
	for _, p := range strings.Split(o.protocols, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Summary is the JSON the fleet prints at the end.
type Summary struct {
	Label     string             `json:"label"`
	Started   time.Time          `json:"started"`
	Seconds   float64            `json:"seconds"`
	Protocols []*ProtocolSummary `json:"protocols"`
	Error     string             `json:"error,omitempty"`
}

// ProtocolSummary is one protocol's run.
type ProtocolSummary struct {
	Protocol string `json:"protocol"`
	Devices  int    `json:"devices"`
	Workers  int    `json:"workers"`
	// Create: REST device creations.
	Create *Outcome `json:"create,omitempty"`
	// Connect: the first connection of every device (for iotgate, this
	// activates the device: a durable write). Handshake and Register
	// split an LwM2M connect where both exist.
	Connect   *Outcome   `json:"connect,omitempty"`
	Handshake *Outcome   `json:"handshake,omitempty"`
	Register  *Outcome   `json:"register,omitempty"`
	Memory    *perDevice `json:"memory,omitempty"`
	Hold      *Hold      `json:"hold,omitempty"`
	// Forward is what the receiver saw of the hold's uplinks (-forward).
	Forward *ForwardSummary `json:"forward,omitempty"`
	// Disconnect, then Reconnect: the whole fleet back at once, as after
	// an outage (ReconnectHandshake, ReconnectRegister split it).
	Disconnect         *Outcome `json:"disconnect,omitempty"`
	Reconnect          *Outcome `json:"reconnect,omitempty"`
	ReconnectHandshake *Outcome `json:"reconnect_handshake,omitempty"`
	ReconnectRegister  *Outcome `json:"reconnect_register,omitempty"`
	// ReconnectRounds are all the storms, in order, when there were
	// several (-rounds); Reconnect is the median one by rate.
	ReconnectRounds []*Outcome `json:"reconnect_rounds,omitempty"`
	FinalDisconnect *Outcome   `json:"final_disconnect,omitempty"`
	Delete          *Outcome   `json:"delete,omitempty"`
}

// Hold is what happened while the fleet was held.
type Hold struct {
	Seconds        float64 `json:"seconds"`
	UplinksSent    int64   `json:"uplinks_sent"`
	UplinksSkipped int64   `json:"uplinks_skipped,omitempty"` // LwM2M: not observed
	// UplinksAcked counts MQTT QoS 1 uplinks the server acknowledged;
	// PerSecond is acknowledged uplinks per second for MQTT QoS 1, sent
	// ones otherwise (LwM2M notifications are not acknowledged).
	UplinksAcked    int64          `json:"uplinks_acked"`
	PerSecond       float64        `json:"uplinks_per_second"`
	AckLatency      *Latency       `json:"uplink_ack_latency,omitempty"`
	UplinkFailures  map[string]int `json:"uplink_failures,omitempty"`
	Commands        *Outcome       `json:"commands,omitempty"`
	CommandsHandled int64          `json:"commands_handled_by_devices,omitempty"`
}

func fleetMain(args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, runErr := runFleet(ctx, o)
	if err := writeSummary(o.out, sum); err != nil {
		return err
	}
	return runErr
}

// runFleet runs every protocol asked for, one after another, and
// summarises them; the summary holds what was measured even on error.
func runFleet(ctx context.Context, o *options) (*Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()
	sum := &Summary{Label: o.label, Started: time.Now().UTC()}
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return sum, err
		}
	}
	f := &fleet{o: o, ids: identities{prefix: o.prefix, seed: o.seed},
		probe: &probe{pid: o.serverPID, debugURL: strings.TrimRight(o.debugURL, "/"), http: &http.Client{Timeout: time.Minute}},
		prog:  newProgress(os.Stderr)}
	if o.api != "" {
		var err error
		if f.rest, err = newRESTClient(strings.TrimRight(o.api, "/"), o.project, o.token, max(o.createConns, o.commandConns), o.timeout); err != nil {
			return sum, err
		}
	}
	var runErr error
	for _, p := range o.protocolList() {
		ps, err := f.runProtocol(ctx, p)
		sum.Protocols = append(sum.Protocols, ps)
		if err != nil {
			runErr = fmt.Errorf("%s: %w", p, err)
			break
		}
	}
	sum.Seconds = round3(time.Since(sum.Started).Seconds())
	if runErr != nil {
		sum.Error = runErr.Error()
	}
	return sum, runErr
}

func writeSummary(path string, sum *Summary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
