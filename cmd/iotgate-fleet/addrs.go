package main

import (
	"fmt"
	"net"
)

// Every TCP connection or UDP socket needs its own local port, and one
// source address has fewer than 30,000 ephemeral ports; a fleet of
// 100,000 sockets therefore spreads its sockets over many loopback
// source addresses. Device i binds sourceIP(i): 127.1.0.1 upwards,
// skipping .0 and .255, cycling after spread addresses.

// sourceIP returns the source address of device i among spread.
func sourceIP(i, spread int) net.IP {
	if spread <= 0 {
		return nil
	}
	n := i % spread
	// 254 usable hosts per /24, from 127.1.0.x.
	third, fourth := n/254, n%254+1
	second := 1 + third/256
	return net.IPv4(127, byte(second), byte(third%256), byte(fourth))
}

// checkLoopback refuses a target that is not a loopback address unless
// the operator said otherwise: the fleet is a load generator.
func checkLoopback(what, addr string, allowRemote bool) error {
	if addr == "" || allowRemote {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s %q is not a loopback address; pass -allow-remote to load another host", what, addr)
	}
	return nil
}
