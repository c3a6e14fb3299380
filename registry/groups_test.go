package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

func mustGroup(t *testing.T, r *Registry, project string, ng NewGroup) *Group {
	t.Helper()
	g, err := r.CreateGroup(context.Background(), project, ng)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func members(t *testing.T, r *Registry, project, group string, pg Page) ([]string, int64, string) {
	t.Helper()
	if pg.Limit == 0 {
		pg.Limit = 50
	}
	l, err := r.GroupDevices(context.Background(), project, group, pg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range l.Devices {
		ids = append(ids, d.DeviceID)
	}
	return ids, l.Count, l.Marker
}

func TestGroupValidation(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ng   NewGroup
		want string
	}{
		{"empty name", NewGroup{}, "invalid name"},
		{"long name", NewGroup{Name: strings.Repeat("n", 65)}, "invalid name"},
		{"bad character", NewGroup{Name: "a/b"}, "invalid name"},
		{"long description", NewGroup{Name: "g", Description: strings.Repeat("d", 65)}, "invalid description"},
		{"dynamic", NewGroup{Name: "g", Type: GroupDynamic}, "dynamic groups are not supported"},
		{"unknown type", NewGroup{Name: "g", Type: "SOMETIMES"}, "invalid group_type"},
		{"other app", NewGroup{Name: "g", AppID: "other"}, "invalid app_id"},
		{"bad super id", NewGroup{Name: "g", SuperGroupID: "zz"}, "invalid super_group_id"},
		{"missing super", NewGroup{Name: "g", SuperGroupID: "0123456789abcdef01234567"}, "device group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.CreateGroup(ctx, "proj", tc.ng)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	// IoTDA's characters, Chinese included, are accepted.
	mustGroup(t, r, "proj", NewGroup{Name: "楼 2 (east) #1_a?'.,&%@!-", Description: "水表", AppID: "proj", Type: GroupStatic})
}

func TestGroupLifecycle(t *testing.T) {
	r, store := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	mustProduct(t, r, "other", "oprod", "MQTT")
	for i := range 4 {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "other", ProductID: "oprod", NodeID: "x"}); err != nil {
		t.Fatal(err)
	}
	g := mustGroup(t, r, "proj", NewGroup{Name: "meters", Description: "water"})
	if g.Level != 1 || len(g.ID) != 24 {
		t.Fatalf("group %+v", g)
	}
	if _, err := r.CreateGroup(ctx, "proj", NewGroup{Name: "meters"}); !errors.As(err, new(*ConflictError)) {
		t.Fatalf("a second group named meters: %v", err)
	}
	// The same name in another project is another group.
	og := mustGroup(t, r, "other", NewGroup{Name: "meters"})

	for _, d := range []string{"prod_n0", "prod_n1", "prod_n2", "prod_n1"} {
		if err := r.AddToGroup(ctx, "proj", g.ID, d); err != nil {
			t.Fatal(err)
		}
	}
	if ids, n, _ := members(t, r, "proj", g.ID, Page{}); fmt.Sprint(ids) != "[prod_n2 prod_n1 prod_n0]" || n != 3 {
		t.Fatalf("members %v count %d", ids, n)
	}
	// Paging: newest first, by marker and offset.
	ids, _, marker := members(t, r, "proj", g.ID, Page{Limit: 1})
	if fmt.Sprint(ids) != "[prod_n2]" {
		t.Fatalf("first page %v", ids)
	}
	if ids, _, _ := members(t, r, "proj", g.ID, Page{Limit: 5, Marker: marker}); fmt.Sprint(ids) != "[prod_n1 prod_n0]" {
		t.Fatalf("after the marker %v", ids)
	}
	if ids, _, _ := members(t, r, "proj", g.ID, Page{Limit: 1, Offset: 2}); fmt.Sprint(ids) != "[prod_n0]" {
		t.Fatalf("offset 2: %v", ids)
	}

	// Project isolation: another project's device and group are not found.
	var nf *NotFoundError
	if err := r.AddToGroup(ctx, "proj", g.ID, "oprod_x"); !errors.As(err, &nf) || nf.Kind != EntityDevice {
		t.Fatalf("another project's device: %v", err)
	}
	if err := r.AddToGroup(ctx, "proj", og.ID, "prod_n3"); !errors.As(err, &nf) || nf.Kind != EntityDeviceGroup {
		t.Fatalf("another project's group: %v", err)
	}
	if _, err := r.Group(ctx, "other", g.ID); !errors.As(err, &nf) {
		t.Fatalf("shown to another project: %v", err)
	}

	// Remove one; removing a non-member is refused.
	if err := r.RemoveFromGroup(ctx, "proj", g.ID, "prod_n1"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveFromGroup(ctx, "proj", g.ID, "prod_n1"); err == nil || !strings.Contains(err.Error(), "not in device group") {
		t.Fatalf("removing a non-member: %v", err)
	}
	// A deleted device leaves its groups in its delete.
	if err := r.DeleteDevice(ctx, "proj", "prod_n0"); err != nil {
		t.Fatal(err)
	}
	if ids, n, _ := members(t, r, "proj", g.ID, Page{}); fmt.Sprint(ids) != "[prod_n2]" || n != 1 {
		t.Fatalf("after removal and device delete: %v count %d", ids, n)
	}

	// Update: rename (the old name is free again), describe.
	name, desc := "water meters", "all of them"
	if _, err := r.UpdateGroup(ctx, "proj", g.ID, GroupChange{Name: &name, Description: &desc}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Group(ctx, "proj", g.ID); got.Name != name || got.Description != desc {
		t.Fatalf("updated %+v", got)
	}
	mustGroup(t, r, "proj", NewGroup{Name: "meters"})
	taken := "meters"
	if _, err := r.UpdateGroup(ctx, "proj", g.ID, GroupChange{Name: &taken}); !errors.As(err, new(*ConflictError)) {
		t.Fatalf("renamed onto a taken name: %v", err)
	}

	l, err := r.ListGroups(ctx, "proj", GroupFilter{}, Page{Limit: 1})
	if err != nil || l.Count != 2 || len(l.Groups) != 1 || l.Groups[0].Name != "meters" {
		t.Fatalf("list: %+v %v", l, err)
	}
	l, err = r.ListGroups(ctx, "proj", GroupFilter{}, Page{Limit: 10, Marker: l.Marker})
	if err != nil || len(l.Groups) != 1 || l.Groups[0].ID != g.ID {
		t.Fatalf("list after the marker: %+v %v", l, err)
	}
	if l, _ := r.ListGroups(ctx, "proj", GroupFilter{Name: name}, Page{Limit: 10}); l.Count != 1 || l.Groups[0].ID != g.ID {
		t.Fatalf("list by name: %+v", l)
	}

	// Deleting the group removes its memberships and counter; the
	// devices stay.
	if err := r.DeleteGroup(ctx, "proj", g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ProjectDevice(ctx, "proj", "prod_n2"); err != nil {
		t.Fatalf("a member was deleted with its group: %v", err)
	}
	var left []string
	if err := store.View(ctx, func(rd kv.Reader) error {
		for _, p := range [][]byte{prefixKey(famGroupMember, g.ID), prefixKey(famDeviceGroup, "prod_n2"), prefixKey(famMemberCount, g.ID)} {
			if err := rd.Scan(p, nil, false, func(k, _ []byte) (bool, error) {
				left = append(left, fmt.Sprintf("%q", k))
				return true, nil
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("keys left after the group's delete: %v", left)
	}
	if _, err := r.Group(ctx, "proj", g.ID); !errors.As(err, &nf) {
		t.Fatalf("deleted group shown: %v", err)
	}
}

func TestGroupQuotas(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	r.quotas.GroupsPerProject, r.quotas.DevicesPerGroup, r.quotas.GroupsPerDevice, r.quotas.GroupDepth = 4, 2, 2, 3
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	for i := range 3 {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Nesting: levels 1 to 3; a fourth level is refused.
	top := mustGroup(t, r, "proj", NewGroup{Name: "l1"})
	mid := mustGroup(t, r, "proj", NewGroup{Name: "l2", SuperGroupID: top.ID})
	low := mustGroup(t, r, "proj", NewGroup{Name: "l3", SuperGroupID: mid.ID})
	if low.Level != 3 || low.SuperGroupID != mid.ID {
		t.Fatalf("level 3 group %+v", low)
	}
	if _, err := r.CreateGroup(ctx, "proj", NewGroup{Name: "l4", SuperGroupID: low.ID}); !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), "at most 3 levels") {
		t.Fatalf("a fourth level: %v", err)
	}
	// Groups per project: the fourth is the last.
	mustGroup(t, r, "proj", NewGroup{Name: "g4"})
	if _, err := r.CreateGroup(ctx, "proj", NewGroup{Name: "g5"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("a fifth group: %v", err)
	}
	// A group with sub-groups is not deleted; its sub-groups first.
	if err := r.DeleteGroup(ctx, "proj", mid.ID); !errors.Is(err, ErrHasSubGroups) {
		t.Fatalf("deleted a group with sub-groups: %v", err)
	}
	if err := r.DeleteGroup(ctx, "proj", low.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteGroup(ctx, "proj", mid.ID); err != nil {
		t.Fatal(err)
	}
	// The deletes gave back quota.
	g5 := mustGroup(t, r, "proj", NewGroup{Name: "g5"})

	// Devices per group.
	for _, d := range []string{"prod_n0", "prod_n1"} {
		if err := r.AddToGroup(ctx, "proj", top.ID, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.AddToGroup(ctx, "proj", top.ID, "prod_n2"); !errors.Is(err, ErrQuota) {
		t.Fatalf("a third device in the group: %v", err)
	}
	// Groups per device.
	if err := r.AddToGroup(ctx, "proj", g5.ID, "prod_n0"); err != nil {
		t.Fatal(err)
	}
	other := mustGroup(t, r, "proj", NewGroup{Name: "g6"})
	if err := r.AddToGroup(ctx, "proj", other.ID, "prod_n0"); !errors.Is(err, ErrQuota) {
		t.Fatalf("a device in a third group: %v", err)
	}
	// A removal makes room.
	if err := r.RemoveFromGroup(ctx, "proj", top.ID, "prod_n1"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddToGroup(ctx, "proj", top.ID, "prod_n2"); err != nil {
		t.Fatal(err)
	}
}

// A group at the default quota's 20,000 members is deleted in one write.
func TestDeleteFullGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 40,000 index entries")
	}
	r, store := newTestRegistry(t, nil)
	ctx := context.Background()
	g := mustGroup(t, r, "proj", NewGroup{Name: "full"})
	n := int(DefaultQuotas.DevicesPerGroup)
	// The members' index entries, written as AddToGroup writes them (the
	// delete reads no device record), in writes of a few thousand.
	for from := 0; from < n; from += 5000 {
		if err := r.write(ctx, func(w Writer) error {
			for i := from; i < from+5000; i++ {
				seq, dev := fmt.Sprintf("%024x", i), fmt.Sprintf("prod_device-number-%06d", i)
				if err := w.Set(groupMemberKey(g.ID, seq), []byte(dev)); err != nil {
					return err
				}
				if err := w.Set(deviceGroupKey(dev, g.ID), []byte(seq)); err != nil {
					return err
				}
			}
			return addCount(w, memberCountKey(g.ID), 5000)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, count, _ := members(t, r, "proj", g.ID, Page{Limit: 1, Marker: "000000000000000000000000"}); count != int64(n) {
		t.Fatalf("count %d", count)
	}
	if err := r.DeleteGroup(ctx, "proj", g.ID); err != nil {
		t.Fatal(err)
	}
	left := 0
	if err := store.View(ctx, func(rd kv.Reader) error {
		return rd.Scan(prefixKey(famGroupMember, g.ID), nil, false, func(_, _ []byte) (bool, error) {
			left++
			return true, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d members left", left)
	}
}
