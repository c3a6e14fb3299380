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
// download at once, counted across every node that shares the store (a
// node admitting its own limit would let a job have limit × nodes). An
// adapter takes a slot before it hands a device the package and gives it
// back when the download ends; a slot expires after its ttl, so a node
// that dies mid-download does not keep it.
//
// A job's slots are one record, fs/{upgrade_id}: the devices holding one
// and their expiries, at most limit of them, so counting costs what the
// slots do, not what the job's devices do. One record rather than a key
// per slot because every take reads and writes it: two nodes taking the
// last free slot at once conflict on any engine (a scan of per-slot keys
// would not see the other's new key where the engine checks the keys
// read, not the ranges scanned). A refusal writes nothing, so waiting
// devices asking again do not contend with each other.

// firmwareSlots is a job's slots record: each holder's expiry.
type firmwareSlots struct {
	Holders map[string]time.Time `json:"holders"`
}

func firmwareSlotsKey(upgradeID string) []byte { return key(famFwSlots, upgradeID) }

// AcquireFirmwareSlot takes one of the limit download slots of firmware
// upgrade upgradeID for deviceID until ttl from now, and reports whether
// the device holds it. A device that holds one already has it renewed,
// whatever the other holders; an expired slot counts as free.
func (r *Registry) AcquireFirmwareSlot(ctx context.Context, upgradeID, deviceID string, limit int, ttl time.Duration) (bool, error) {
	switch {
	case limit < 1:
		return false, invalid("limit", "at least one download slot, not %d", limit)
	case ttl <= 0:
		return false, invalid("ttl", "a download slot needs a positive expiry, not %v", ttl)
	}
	var held bool
	err := r.write(ctx, func(w Writer) error {
		held = false
		slots, err := readFirmwareSlots(w, upgradeID)
		if err != nil {
			return err
		}
		now := r.now()
		slots.dropExpired(now)
		if _, ok := slots.Holders[deviceID]; !ok && len(slots.Holders) >= limit {
			return nil // full: nothing written, so a refusal conflicts with no one
		}
		slots.Holders[deviceID] = now.Add(ttl).UTC()
		held = true
		return putFirmwareSlots(w, upgradeID, slots)
	})
	if err != nil {
		return false, fmt.Errorf("firmware upgrade %s: taking a download slot for device %s: %w", upgradeID, deviceID, err)
	}
	return held, nil
}

// ReleaseFirmwareSlot gives back deviceID's download slot of firmware
// upgrade upgradeID; without one it does nothing.
func (r *Registry) ReleaseFirmwareSlot(ctx context.Context, upgradeID, deviceID string) error {
	err := r.write(ctx, func(w Writer) error {
		slots, err := readFirmwareSlots(w, upgradeID)
		if err != nil {
			return err
		}
		if _, ok := slots.Holders[deviceID]; !ok {
			return nil
		}
		delete(slots.Holders, deviceID)
		slots.dropExpired(r.now())
		return putFirmwareSlots(w, upgradeID, slots)
	})
	if err != nil {
		return fmt.Errorf("firmware upgrade %s: releasing the download slot of device %s: %w", upgradeID, deviceID, err)
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

func readFirmwareSlots(rd Reader, upgradeID string) (*firmwareSlots, error) {
	s := &firmwareSlots{}
	b, err := rd.Get(firmwareSlotsKey(upgradeID))
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("decode the download slots of firmware upgrade %s: %w", upgradeID, err)
		}
	}
	if s.Holders == nil {
		s.Holders = make(map[string]time.Time)
	}
	return s, nil
}

// putFirmwareSlots stores s; a job with no slot held keeps no record.
func putFirmwareSlots(w Writer, upgradeID string, s *firmwareSlots) error {
	if len(s.Holders) == 0 {
		return w.Delete(firmwareSlotsKey(upgradeID))
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return w.Set(firmwareSlotsKey(upgradeID), b)
}
