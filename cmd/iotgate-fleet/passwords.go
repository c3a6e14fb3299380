package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
)

// passwordsMain is "iotgate-fleet passwords": it writes username:password
// lines for the fleet's MQTT devices (the passwords they send with the
// given ClientId timestamp), which "mosquitto_passwd -U" turns into a
// mosquitto password file, so mosquitto checks the same credentials
// iotgate does.
func passwordsMain(args []string) error {
	fs := flag.NewFlagSet("iotgate-fleet passwords", flag.ContinueOnError)
	n := fs.Int("n", 1000, "devices")
	proto := fs.String("protocol", protoMQTT, "mqtt or mqtts")
	prefix := fs.String("prefix", "fleet", "node id prefix (as given to the fleet)")
	seed := fs.String("seed", "iotgate-fleet", "secret seed (as given to the fleet)")
	ts := fs.String("timestamp", "", "MQTT ClientId timestamp (as given to the fleet)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ts == "" {
		return fmt.Errorf("-timestamp is required (the same as the fleet's)")
	}
	ids := identities{prefix: *prefix, seed: *seed}
	w := bufio.NewWriter(os.Stdout)
	for i := range *n {
		id := ids.deviceID(*proto, i)
		fmt.Fprintf(w, "%s:%s\n", id, mqttPassword(ids.secret(id), *ts))
	}
	return w.Flush()
}
