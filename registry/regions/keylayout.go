package regions

import "github.com/iotgate/iotgate/registry/kv"

// StoreLayout describes the activation centre's directory keys
// (directory.go) for engines that keep each family in a table of its
// own (pgkv). The Alibaba product key and device name are the entry's
// primary key, so a device is assigned once.
func StoreLayout() []kv.Family {
	pair := []kv.Column{kv.TextCol("product_key"), kv.TextCol("device_name")}
	return []kv.Family{
		{Name: "act/d", Prefix: "act/d/", Table: "activation_entries", Parts: pair, Value: kv.BytesValue("entry")},
		{Name: "act/i", Prefix: "act/i/", Table: "activation_device_ids", Parts: []kv.Column{kv.TextCol("device_id")}, Value: kv.BytesValue("pair")},
		{Name: "act/m", Prefix: "act/m/", Table: "activation_moves", Parts: pair},
	}
}
