package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/iotgate/iotgate/registry/kv"
)

// Static device groups (IoTDA's device-group API): named sets of a
// project's devices an application adds and removes by hand, nested up to
// Quotas.GroupDepth levels. Membership is indexed both ways (gm/ by group,
// gd/ by device) in the same write, so a group lists its members without
// reading other groups and a deleted device leaves its groups in the
// write that deletes it. Dynamic groups (rule-matched) are not supported.

// Group types (IoTDA's group_type).
const (
	GroupStatic  = "STATIC"
	GroupDynamic = "DYNAMIC"
)

// IoTDA's limits on a group's fields.
const (
	maxGroupName        = 64
	maxGroupDescription = 64
)

// Group is a static device group of a project.
type Group struct {
	ID          string `json:"id"`
	ProjectID   string `json:"-"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// SuperGroupID is the parent group ("" for a top-level group).
	SuperGroupID string `json:"super,omitempty"`
	// Level is 1 for a top-level group, its parent's plus one otherwise.
	Level    int       `json:"level"`
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified"`
}

// NewGroup is a group to create.
type NewGroup struct {
	Name, Description, SuperGroupID string
	// AppID, when given, must be the project's (its one resource space).
	AppID string
	// Type is GroupStatic or "" (the same).
	Type string
}

// GroupChange is an update of a group; nil fields keep their value.
type GroupChange struct {
	Name, Description *string
}

// groupText reports whether s uses only what IoTDA allows in a group's
// name and description: Chinese characters, letters, digits, space and
// _?'#().,&%@!-.
func groupText(s string) bool {
	for _, c := range s {
		switch {
		case c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'):
		case c < utf8.RuneSelf && c != 0 && isGroupPunct(byte(c)):
		case unicode.Is(unicode.Han, c):
		default:
			return false
		}
	}
	return true
}

func isGroupPunct(c byte) bool {
	for i := 0; i < len(groupPunct); i++ {
		if groupPunct[i] == c {
			return true
		}
	}
	return false
}

const groupPunct = "_? '#().,&%@!-"

func checkGroupName(name string) error {
	if n := utf8.RuneCountInString(name); n == 0 || n > maxGroupName {
		return invalid("name", "must be 1 to %d characters", maxGroupName)
	}
	if !groupText(name) {
		return invalid("name", "%q may hold only Chinese characters, letters, digits, spaces and _?'#().,&%%@!-", name)
	}
	return nil
}

func checkGroupDescription(d string) error {
	if utf8.RuneCountInString(d) > maxGroupDescription {
		return invalid("description", "must be at most %d characters", maxGroupDescription)
	}
	if !groupText(d) {
		return invalid("description", "may hold only Chinese characters, letters, digits, spaces and _?'#().,&%%@!-")
	}
	return nil
}

// checkGroupID refuses what cannot be a group id (IoTDA: at most 36
// characters, hexadecimal digits and '-'), before any read.
func checkGroupID(field, id string) error {
	if id == "" || len(id) > 36 {
		return invalid(field, "must be 1 to 36 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return invalid(field, "%q may hold only hexadecimal digits and '-'", id)
		}
	}
	return nil
}

// CreateGroup creates a static group of project, under SuperGroupID when
// given. Over the project's group quota or the nesting depth it is
// refused with ErrQuota.
func (r *Registry) CreateGroup(ctx context.Context, project string, ng NewGroup) (*Group, error) {
	switch ng.Type {
	case "", GroupStatic:
	case GroupDynamic:
		return nil, invalid("group_type", "dynamic groups are not supported: create a STATIC group and add its devices")
	default:
		return nil, invalid("group_type", "must be STATIC or DYNAMIC")
	}
	if ng.AppID != "" && ng.AppID != project {
		return nil, invalid("app_id", "must be this project's id %q: iotgate has one resource space per project", project)
	}
	if err := checkGroupName(ng.Name); err != nil {
		return nil, err
	}
	if err := checkGroupDescription(ng.Description); err != nil {
		return nil, err
	}
	if ng.SuperGroupID != "" {
		if err := checkGroupID("super_group_id", ng.SuperGroupID); err != nil {
			return nil, err
		}
	}
	now := r.now().UTC()
	g := &Group{ID: r.ids.Next(now), ProjectID: project, Name: ng.Name, Description: ng.Description,
		SuperGroupID: ng.SuperGroupID, Level: 1, Created: now, Modified: now}
	err := r.write(ctx, func(w Writer) error {
		n, err := readCount(w, groupCountKey(project))
		if err != nil {
			return err
		}
		if n >= r.quotas.GroupsPerProject {
			return fmt.Errorf("%w: a project has at most %d device groups", ErrQuota, r.quotas.GroupsPerProject)
		}
		if g.SuperGroupID != "" {
			super, err := getGroup(w, project, g.SuperGroupID)
			if err != nil {
				return err
			}
			if super.Level >= r.quotas.GroupDepth {
				return fmt.Errorf("%w: device groups nest at most %d levels, and group %s is at level %d",
					ErrQuota, r.quotas.GroupDepth, super.ID, super.Level)
			}
			g.Level = super.Level + 1
			if err := w.Set(subGroupKey(super.ID, g.ID), nil); err != nil {
				return err
			}
		}
		if err := nameFree(w, project, g.Name); err != nil {
			return err
		}
		if err := w.Set(groupNameKey(project, g.Name), []byte(g.ID)); err != nil {
			return err
		}
		if err := addCount(w, groupCountKey(project), 1); err != nil {
			return err
		}
		return putGroup(w, g)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Group returns a group of project.
func (r *Registry) Group(ctx context.Context, project, id string) (*Group, error) {
	if err := checkGroupID("group_id", id); err != nil {
		return nil, err
	}
	var g *Group
	err := r.view(ctx, func(rd Reader) error {
		var err error
		g, err = getGroup(rd, project, id)
		return err
	})
	return g, err
}

// UpdateGroup renames a group or changes its description.
func (r *Registry) UpdateGroup(ctx context.Context, project, id string, ch GroupChange) (*Group, error) {
	if err := checkGroupID("group_id", id); err != nil {
		return nil, err
	}
	if ch.Name != nil {
		if err := checkGroupName(*ch.Name); err != nil {
			return nil, err
		}
	}
	if ch.Description != nil {
		if err := checkGroupDescription(*ch.Description); err != nil {
			return nil, err
		}
	}
	var g *Group
	err := r.write(ctx, func(w Writer) error {
		var err error
		if g, err = getGroup(w, project, id); err != nil {
			return err
		}
		if ch.Name != nil && *ch.Name != g.Name {
			if err := nameFree(w, project, *ch.Name); err != nil {
				return err
			}
			if err := w.Delete(groupNameKey(project, g.Name)); err != nil {
				return err
			}
			if err := w.Set(groupNameKey(project, *ch.Name), []byte(g.ID)); err != nil {
				return err
			}
			g.Name = *ch.Name
		}
		if ch.Description != nil {
			g.Description = *ch.Description
		}
		g.Modified = r.now().UTC()
		return putGroup(w, g)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// ErrHasSubGroups refuses deleting a group that has sub-groups (as IoTDA:
// delete them first).
var ErrHasSubGroups = errors.New("device group still has sub-groups")

// DeleteGroup deletes a group without sub-groups; its devices leave it
// (they are not deleted).
func (r *Registry) DeleteGroup(ctx context.Context, project, id string) error {
	if err := checkGroupID("group_id", id); err != nil {
		return err
	}
	return r.write(ctx, func(w Writer) error {
		g, err := getGroup(w, project, id)
		if err != nil {
			return err
		}
		hasSub := false
		if err := w.Scan(prefixKey(famSubGroup, id), nil, false, func(_, _ []byte) (bool, error) {
			hasSub = true
			return false, nil
		}); err != nil {
			return err
		}
		if hasSub {
			return fmt.Errorf("group %s: %w", id, ErrHasSubGroups)
		}
		// Members are deleted after the scan: a store's scan need not
		// see its own transaction's deletes consistently.
		var members [][]byte
		var devices []string
		if err := w.Scan(prefixKey(famGroupMember, id), nil, false, func(k, v []byte) (bool, error) {
			members = append(members, append([]byte(nil), k...))
			devices = append(devices, string(v))
			return true, nil
		}); err != nil {
			return err
		}
		for i, k := range members {
			if err := w.Delete(k); err != nil {
				return err
			}
			if err := w.Delete(deviceGroupKey(devices[i], id)); err != nil {
				return err
			}
		}
		if err := addCount(w, groupCountKey(project), -1); err != nil {
			return err
		}
		if err := deleteCount(w, memberCountKey(id)); err != nil {
			return err
		}
		if g.SuperGroupID != "" {
			if err := w.Delete(subGroupKey(g.SuperGroupID, id)); err != nil {
				return err
			}
		}
		for _, k := range [][]byte{groupNameKey(project, g.Name), groupKey(project, id)} {
			if err := w.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// GroupFilter narrows a group listing; empty fields match all.
type GroupFilter struct {
	Name string
	// ModifiedAfter keeps the groups modified after it.
	ModifiedAfter time.Time
}

// GroupList is one page of groups.
type GroupList struct {
	Groups []*Group
	Count  int64  // all matching groups, not just this page
	Marker string // marker (group id) of the last group returned
}

// ListGroups lists a project's groups, newest first. It reads every
// group record of the project (at most Quotas.GroupsPerProject) to count
// those the filter keeps.
func (r *Registry) ListGroups(ctx context.Context, project string, f GroupFilter, pg Page) (*GroupList, error) {
	out := &GroupList{Groups: []*Group{}}
	err := r.view(ctx, func(rd Reader) error {
		skip := pg.Offset
		return rd.Scan(prefixKey(famGroup, project), nil, true, func(k, v []byte) (bool, error) {
			id := string(k[lastSep(k)+1:])
			g, err := decodeGroup(project, v)
			if err != nil {
				return false, err
			}
			if f.Name != "" && g.Name != f.Name || !f.ModifiedAfter.IsZero() && !g.Modified.After(f.ModifiedAfter) {
				return true, nil
			}
			out.Count++
			if pg.Marker != "" && id >= pg.Marker {
				return true, nil
			}
			if skip > 0 {
				skip--
				return true, nil
			}
			if len(out.Groups) < pg.Limit {
				out.Groups = append(out.Groups, g)
				out.Marker = id
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MemberList is one page of a group's devices.
type MemberList struct {
	Devices []*Device
	Count   int64  // all the group's devices
	Marker  string // marker of the last device returned
}

// GroupDevices lists a group's devices, the most recently added first.
func (r *Registry) GroupDevices(ctx context.Context, project, id string, pg Page) (*MemberList, error) {
	if err := checkGroupID("group_id", id); err != nil {
		return nil, err
	}
	out := &MemberList{Devices: []*Device{}}
	err := r.view(ctx, func(rd Reader) error {
		if _, err := getGroup(rd, project, id); err != nil {
			return err
		}
		var err error
		if out.Count, err = readCount(rd, memberCountKey(id)); err != nil {
			return err
		}
		prefix := prefixKey(famGroupMember, id)
		var from []byte
		if pg.Marker != "" {
			from = append(append([]byte(nil), prefix...), pg.Marker...)
		}
		skip := pg.Offset
		return rd.Scan(prefix, from, true, func(k, v []byte) (bool, error) {
			seq := string(k[len(prefix):])
			if pg.Marker != "" && seq >= pg.Marker {
				return true, nil
			}
			if skip > 0 {
				skip--
				return true, nil
			}
			if len(out.Devices) >= pg.Limit {
				return false, nil
			}
			d, err := r.getDevice(rd, string(v))
			if err != nil {
				return false, err
			}
			out.Devices = append(out.Devices, d)
			out.Marker = seq
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddToGroup adds a device of project to a group. Adding a member again
// changes nothing. Over the group's device quota or the device's group
// quota it is refused with ErrQuota.
func (r *Registry) AddToGroup(ctx context.Context, project, groupID, deviceID string) error {
	if err := checkGroupID("group_id", groupID); err != nil {
		return err
	}
	seq := r.ids.Next(r.now())
	return r.write(ctx, func(w Writer) error {
		if _, err := getGroup(w, project, groupID); err != nil {
			return err
		}
		d, err := r.getDevice(w, deviceID)
		if err != nil {
			return err
		}
		if d.ProjectID != project {
			return &NotFoundError{Kind: EntityDevice, ID: deviceID}
		}
		if _, err := w.Get(deviceGroupKey(deviceID, groupID)); err == nil {
			return nil
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		in := 0
		if err := w.Scan(prefixKey(famDeviceGroup, deviceID), nil, false, func(_, _ []byte) (bool, error) {
			in++
			return true, nil
		}); err != nil {
			return err
		}
		if in >= r.quotas.GroupsPerDevice {
			return fmt.Errorf("%w: a device belongs to at most %d device groups", ErrQuota, r.quotas.GroupsPerDevice)
		}
		n, err := readCount(w, memberCountKey(groupID))
		if err != nil {
			return err
		}
		if n >= r.quotas.DevicesPerGroup {
			return fmt.Errorf("%w: a device group has at most %d devices", ErrQuota, r.quotas.DevicesPerGroup)
		}
		if err := w.Set(groupMemberKey(groupID, seq), []byte(deviceID)); err != nil {
			return err
		}
		if err := w.Set(deviceGroupKey(deviceID, groupID), []byte(seq)); err != nil {
			return err
		}
		return addCount(w, memberCountKey(groupID), 1)
	})
}

// RemoveFromGroup removes a device from a group; the device stays. A
// device that is not a member is refused (NotFoundError).
func (r *Registry) RemoveFromGroup(ctx context.Context, project, groupID, deviceID string) error {
	if err := checkGroupID("group_id", groupID); err != nil {
		return err
	}
	return r.write(ctx, func(w Writer) error {
		if _, err := getGroup(w, project, groupID); err != nil {
			return err
		}
		d, err := r.getDevice(w, deviceID)
		if err != nil {
			return err
		}
		if d.ProjectID != project {
			return &NotFoundError{Kind: EntityDevice, ID: deviceID}
		}
		left, err := leaveGroup(w, deviceID, groupID)
		if err != nil {
			return err
		}
		if !left {
			return invalid("device_id", "device %s is not in device group %s", deviceID, groupID)
		}
		return nil
	})
}

// leaveGroup removes a device's membership of a group, if it has one.
func leaveGroup(w Writer, deviceID, groupID string) (bool, error) {
	seq, err := w.Get(deviceGroupKey(deviceID, groupID))
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := w.Delete(groupMemberKey(groupID, string(seq))); err != nil {
		return false, err
	}
	if err := w.Delete(deviceGroupKey(deviceID, groupID)); err != nil {
		return false, err
	}
	return true, addCount(w, memberCountKey(groupID), -1)
}

// leaveGroups removes a device being deleted from all its groups (at most
// Quotas.GroupsPerDevice), in the device's delete.
func leaveGroups(w Writer, deviceID string) error {
	var groups []string
	if err := w.Scan(prefixKey(famDeviceGroup, deviceID), nil, false, func(k, _ []byte) (bool, error) {
		groups = append(groups, string(k[lastSep(k)+1:]))
		return true, nil
	}); err != nil {
		return err
	}
	for _, g := range groups {
		if _, err := leaveGroup(w, deviceID, g); err != nil {
			return fmt.Errorf("remove device %s from group %s: %w", deviceID, g, err)
		}
	}
	return nil
}

// nameFree refuses a name another group of the project has. (Not absent:
// its key filter knows device keys only.)
func nameFree(rd Reader, project, name string) error {
	_, err := rd.Get(groupNameKey(project, name))
	switch {
	case err == nil:
		return &ConflictError{Field: UniqueGroupName, Value: name}
	case errors.Is(err, kv.ErrNotFound):
		return nil
	}
	return err
}

func putGroup(w Writer, g *Group) error {
	b, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode device group %s: %w", g.ID, err)
	}
	return w.Set(groupKey(g.ProjectID, g.ID), b)
}

func getGroup(rd Reader, project, id string) (*Group, error) {
	v, err := rd.Get(groupKey(project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityDeviceGroup, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read device group %s: %w", id, err)
	}
	return decodeGroup(project, v)
}

func decodeGroup(project string, v []byte) (*Group, error) {
	g := &Group{}
	if err := json.Unmarshal(v, g); err != nil {
		return nil, fmt.Errorf("decode device group of %s: %w", project, err)
	}
	g.ProjectID = project
	return g, nil
}
