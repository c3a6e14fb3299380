package batchtask

import (
	"encoding/binary"
	"fmt"
)

// Key layout, in the registry's store (registry/keys.go lists these
// families as this package's). Ids are [0-9a-f], so a 0 byte separates
// parts safely.
//
//	bt/{task_id}             task record (JSON)
//	btl/{project}/{task_id}  nil (a project's tasks; ids sort by creation)
//	bta/{task_id}            nil (tasks the runner has work on)
//	bti/{task_id}/{index}    item record (index 4 bytes big-endian)
//	btt/{task_id}/{target}   index of the target's first item
//	btc/{task_id}/{slot}     item counts by status, as changed by one writer
//	btf/{project}/{file_id}  uploaded file record (JSON)
//	btd/{file_id}            uploaded file content
//
// Counts are split by writer (each runner worker has a slot, FinishItem
// another) so workers recording outcomes of one task at once never
// conflict on one key; a read sums the slots.
const (
	famTask    = "bt"
	famList    = "btl"
	famActive  = "bta"
	famItem    = "bti"
	famTarget  = "btt"
	famCount   = "btc"
	famFile    = "btf"
	famContent = "btd"
)

func key(fam string, parts ...string) []byte {
	b := []byte(fam)
	for _, p := range parts {
		b = append(append(b, 0), p...)
	}
	return b
}

func prefix(fam string, parts ...string) []byte { return append(key(fam, parts...), 0) }

func taskKey(id string) []byte             { return key(famTask, id) }
func listKey(project, id string) []byte    { return key(famList, project, id) }
func activeKey(id string) []byte           { return key(famActive, id) }
func targetKey(task, target string) []byte { return key(famTarget, task, target) }
func countKey(task, slot string) []byte    { return key(famCount, task, slot) }
func fileKey(project, id string) []byte    { return key(famFile, project, id) }
func contentKey(id string) []byte          { return key(famContent, id) }

func itemKey(task string, index int) []byte {
	return binary.BigEndian.AppendUint32(prefix(famItem, task), uint32(index))
}

// itemIndex reads the index off an item key of task.
func itemIndex(task string, k []byte) (int, error) {
	n := len(prefix(famItem, task))
	if len(k) != n+4 {
		return 0, fmt.Errorf("batch task %s: malformed item key %q", task, k)
	}
	return int(binary.BigEndian.Uint32(k[n:])), nil
}
