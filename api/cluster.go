package api

import (
	"context"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// clusterRegistry serves the cluster's membership and the health check's
// store probe.
type clusterRegistry interface {
	Nodes(ctx context.Context) ([]registry.NodeInfo, error)
	Ping(ctx context.Context) error
}

// Our extension of the IoTDA API (README "Running a cluster"): the live
// nodes, whatever the project in the path (any valid credential).
func (s *Server) clusterRoutes(g *echo.Group) {
	g.GET("/cluster/nodes", s.listNodes)
}

type nodeView struct {
	NodeID   string `json:"node_id"`
	Started  string `json:"started"`
	LastSeen string `json:"last_seen"`
	// Devices counts live sessions per protocol, every protocol named.
	Devices map[string]int `json:"devices"`
}

// protocols are the keys of nodeView.Devices.
var protocols = []registry.Protocol{registry.ProtocolMQTT, registry.ProtocolLwM2M}

func (s *Server) listNodes(c echo.Context) error {
	nodes, err := s.reg.Nodes(c.Request().Context())
	if err != nil {
		return err
	}
	views := make([]nodeView, len(nodes))
	for i, n := range nodes {
		v := nodeView{NodeID: n.Node, Started: compact(n.Started), LastSeen: compact(n.Seen),
			Devices: make(map[string]int, len(protocols))}
		for _, p := range protocols {
			v.Devices[string(p)] = n.Devices[string(p)]
		}
		views[i] = v
	}
	return c.JSON(http.StatusOK, map[string]any{"nodes": views})
}
