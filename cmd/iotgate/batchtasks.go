package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/batchtask"
)

// BatchTasksConfig configures IoTDA's batch tasks (registry/batchtask).
type BatchTasksConfig struct {
	// MaxItems bounds one task's targets or file rows.
	MaxItems int `yaml:"max_items"`
	// MaxFileBytes bounds an uploaded file (api.max_body_bytes bounds
	// the request that carries it too).
	MaxFileBytes int `yaml:"max_file_bytes"`
	// MaxFiles bounds the files one project keeps.
	MaxFiles int `yaml:"max_files"`
	// Workers is how many items run at once on the node running tasks.
	Workers int `yaml:"workers"`
	// Rate bounds the items started per second, over all tasks.
	Rate float64 `yaml:"rate"`
}

func defaultBatchTasks() BatchTasksConfig {
	d := batchtask.DefaultLimits
	return BatchTasksConfig{MaxItems: d.MaxItems, MaxFileBytes: d.MaxFileBytes, MaxFiles: d.MaxFiles, Workers: d.Workers, Rate: d.Rate}
}

func (c BatchTasksConfig) validate() error {
	switch {
	case c.MaxItems < 1:
		return errors.New("config: batch_tasks.max_items must be at least 1")
	case c.MaxFileBytes < 1:
		return errors.New("config: batch_tasks.max_file_bytes must be at least 1")
	case c.MaxFiles < 1:
		return errors.New("config: batch_tasks.max_files must be at least 1")
	case c.Workers < 1 || c.Workers > 256:
		return errors.New("config: batch_tasks.workers must be 1 to 256")
	case c.Rate <= 0:
		return errors.New("config: batch_tasks.rate must be positive")
	}
	return nil
}

// newBatchTasks builds the batch task service over the node's store and
// registry; lease elects the node that runs tasks (nil on a single
// node). Run it with runBatchTasks. Firmware upgrade jobs started by a
// firmwareUpgrade task report to it inside the transaction that stores
// each of their steps.
func newBatchTasks(c BatchTasksConfig, n *node, log *slog.Logger) *batchtask.Service {
	var lease registry.Lease = registry.LocalLease{}
	if n.lease != nil {
		lease = n.lease
	}
	kinds := append(batchtask.DeviceKinds(n.reg), batchtask.FirmwareKind(n.reg))
	s := batchtask.New(batchtask.Options{Store: n.store, Kinds: kinds, Lease: lease,
		Describe: api.DescribeItemError, Logger: log.With("component", "batchtasks"),
		Limits: batchtask.Limits{MaxItems: c.MaxItems, MaxFileBytes: c.MaxFileBytes, MaxFiles: c.MaxFiles,
			Workers: c.Workers, Rate: c.Rate}})
	n.reg.OnFirmwareItemChange(s.TrackFirmware)
	n.reg.OnFirmwareItemDone(s.FirmwareItemDone)
	return s
}

// runBatchTasks runs s until ctx ends; the returned function waits for
// it to stop.
func runBatchTasks(ctx context.Context, s *batchtask.Service) (wait func()) {
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return func() { <-done }
}
