package batchtask

import "github.com/iotgate/iotgate/registry/kv"

// StoreLayout describes this package's key families (keys.go) for
// engines that keep each in a table of its own (pgkv).
func StoreLayout() []kv.Family {
	t, rec := kv.TextCol, kv.BytesValue
	fam := func(name, table string, value kv.Column, parts ...kv.Column) kv.Family {
		return kv.Family{Name: name, Table: table, Parts: parts, Value: value}
	}
	return []kv.Family{
		fam(famTask, "batch_tasks", rec("record"), t("task_id")),
		fam(famList, "project_batch_tasks", kv.Column{}, t("project_id"), t("task_id")),
		fam(famActive, "active_batch_tasks", kv.Column{}, t("task_id")),
		fam(famItem, "batch_task_items", rec("record"), t("task_id"), kv.BinaryCol("item_index", 4)),
		fam(famTarget, "batch_task_targets", rec("item_index"), t("task_id"), t("target")),
		fam(famCount, "batch_task_counts", rec("counts"), t("task_id"), t("slot")),
		fam(famFile, "batch_task_files", rec("record"), t("project_id"), t("file_id")),
		fam(famContent, "batch_task_file_contents", rec("content"), t("file_id")),
	}
}
