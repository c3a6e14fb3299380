package natstest_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
)

func dial(url string) error {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// A server stops and comes back on the same port; a cluster's members
// each serve on their own port and are joined in one URL list.
func TestStopRestart(t *testing.T) {
	srvs := natstest.StartCluster(t, 2)
	if got := strings.Split(natstest.URLs(srvs), ","); len(got) != 2 || got[0] == got[1] {
		t.Fatalf("URLs %q", got)
	}
	s := srvs[0]
	url := s.URL()
	if err := dial(url); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := dial(url); err == nil {
		t.Fatal("a stopped server accepts connections")
	}
	s.Restart() // waits for its route to the other member
	if s.URL() != url {
		t.Fatalf("restarted on %s, was %s", s.URL(), url)
	}
	if err := dial(url); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if err := dial(url); err == nil {
		t.Fatal("a killed server accepts connections")
	}
	if err := dial(srvs[1].URL()); err != nil {
		t.Fatalf("the other member: %v", err)
	}
}
