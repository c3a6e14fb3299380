package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Firmware download slots: at most limit devices of one firmware upgrade
// task download at once, counted across every node that shares the
// store (a node admitting its own limit would let a task have limit ×
// nodes). The task is the batch task that started the items' jobs, or
// the job itself when none did (FirmwareDelivery.SlotGroup). An adapter
// takes a slot before it hands a device the package and gives it back
// when the download ends; a slot expires after its ttl, so a node that
// dies mid-download does not keep it.
//
// A group's slots are one record, fs/{group}: the devices holding one
// and their expiries, at most limit of them, so counting costs what the
// slots do, not what the task's devices do. One record rather than a key
// per slot because every take reads and writes it: two nodes taking the
// last free slot at once conflict on any engine (a scan of per-slot keys
// would not see the other's new key where the engine checks the keys
// read, not the ranges scanned). A refusal writes nothing, so waiting
// devices asking again do not contend with each other.

// firmwareSlots is a group's slots record: each holder's expiry.
type firmwareSlots struct {
	Holders map[string]time.Time `json:"holders"`
}

func firmwareSlotsKey(group string) []byte { return key(famFwSlots, group) }

// AcquireFirmwareSlot takes one of the limit download slots of d's group
// (d.SlotGroup) for d's device until ttl from now, and reports whether
// the device holds it. A device that holds one already has it renewed,
// whatever the other holders; an expired slot counts as free.
func (r *Registry) AcquireFirmwareSlot(ctx context.Context, d FirmwareDelivery, limit int, ttl time.Duration) (bool, error) {
	switch {
	case limit < 1:
		return false, invalid("limit", "at least one download slot, not %d", limit)
	case ttl <= 0:
		return false, invalid("ttl", "a download slot needs a positive expiry, not %v", ttl)
	}
	group := d.SlotGroup()
	var held bool
	err := r.write(ctx, func(w Writer) error {
		held = false
		slots, err := readFirmwareSlots(w, group)
		if err != nil {
			return err
		}
		now := r.now()
		slots.dropExpired(now)
		if _, ok := slots.Holders[d.DeviceID]; !ok && len(slots.Holders) >= limit {
			return nil // full: nothing written, so a refusal conflicts with no one
		}
		slots.Holders[d.DeviceID] = now.Add(ttl).UTC()
		held = true
		return putFirmwareSlots(w, group, slots)
	})
	if err != nil {
		return false, fmt.Errorf("firmware upgrade %s: taking a download slot of %s for device %s: %w", d.UpgradeID, group, d.DeviceID, err)
	}
	return held, nil
}

// ReleaseFirmwareSlot gives back d's device's download slot of d's
// group; without one it does nothing.
func (r *Registry) ReleaseFirmwareSlot(ctx context.Context, d FirmwareDelivery) error {
	group := d.SlotGroup()
	err := r.write(ctx, func(w Writer) error {
		slots, err := readFirmwareSlots(w, group)
		if err != nil {
			return err
		}
		if _, ok := slots.Holders[d.DeviceID]; !ok {
			return nil
		}
		delete(slots.Holders, d.DeviceID)
		slots.dropExpired(r.now())
		return putFirmwareSlots(w, group, slots)
	})
	if err != nil {
		return fmt.Errorf("firmware upgrade %s: releasing the download slot of %s of device %s: %w", d.UpgradeID, group, d.DeviceID, err)
	}
	return nil
}

// dropExpired forgets the slots whose expiry has come.
func (s *firmwareSlots) dropExpired(now time.Time) {
	for dev, exp := range s.Holders {
		if !now.Before(exp) {
			delete(s.Holders, dev)
		}
	}
}

func readFirmwareSlots(rd Reader, group string) (*firmwareSlots, error) {
	s := &firmwareSlots{}
	b, err := rd.Get(firmwareSlotsKey(group))
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("decode the download slots of %s: %w", group, err)
		}
	}
	if s.Holders == nil {
		s.Holders = make(map[string]time.Time)
	}
	return s, nil
}

// putFirmwareSlots stores s; a group with no slot held keeps no record.
func putFirmwareSlots(w Writer, group string, s *firmwareSlots) error {
	if len(s.Holders) == 0 {
		return w.Delete(firmwareSlotsKey(group))
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return w.Set(firmwareSlotsKey(group), b)
}
