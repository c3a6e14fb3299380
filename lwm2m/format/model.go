package format

// Model gives resource kinds, which TLV, text and opaque payloads do not
// carry and which JSON/CBOR numbers only hint at.
type Model interface {
	// Kind returns the kind of resource (object, resource) and whether the
	// model knows it. Executable resources have no kind.
	Kind(object, resource int32) (Kind, bool)
}

// ModelFunc adapts a function to Model, e.g. to layer a device's custom
// objects over DefaultModel.
type ModelFunc func(object, resource int32) (Kind, bool)

// Kind calls f.
func (f ModelFunc) Kind(object, resource int32) (Kind, bool) { return f(object, resource) }

// noModel knows nothing; Decode uses it for a nil Model.
type noModel struct{}

func (noModel) Kind(int32, int32) (Kind, bool) { return KindNone, false }

// DefaultModel returns the kinds of the core OMA objects: 0 Security,
// 1 Server, 3 Device, 4 Connectivity Monitoring, 5 Firmware Update and
// 19 BinaryAppDataContainer, as listed in the OMA LwM2M registry
// (Security 1.2, Server 1.2, Device 1.2, Connectivity Monitoring 1.3,
// Firmware Update 1.2, BinaryAppDataContainer 1.0). The value is immutable.
func DefaultModel() Model { return defaultModel{} }

type defaultModel struct{}

// Resource kinds per object, indexed by resource id, one letter each:
// S String, I Integer, U Unsigned, F Float, B Boolean, O Opaque, T Time,
// L Objlnk, '-' executable or undefined. Constants keep the table immutable.
const (
	kindsSecurity     = "SBIOOOIOOSIIIUSUULUUUUUUUSLLIIS" // object 0, resources 0..30
	kindsServer       = "IIII-IBS--LUTUUBBUUUUBSBLSIU"    // object 1, resources 0..27
	kindsDevice       = "SSSS--IIIIII-TSSSSSSIIL"         // object 3, resources 0..22
	kindsConnectivity = "IIIISSISIIIIII"                  // object 4, resources 0..13
	kindsFirmware     = "OS-I-ISSII-ITUB"                 // object 5, resources 0..14
	kindsBinaryApp    = "OITSSI"                          // object 19, resources 0..5
)

func (defaultModel) Kind(object, resource int32) (Kind, bool) {
	var table string
	switch object {
	case 0:
		table = kindsSecurity
	case 1:
		table = kindsServer
	case 3:
		table = kindsDevice
	case 4:
		table = kindsConnectivity
	case 5:
		table = kindsFirmware
	case 19:
		table = kindsBinaryApp
	default:
		return KindNone, false
	}
	if resource < 0 || int(resource) >= len(table) {
		return KindNone, false
	}
	switch table[resource] {
	case 'S':
		return KindString, true
	case 'I':
		return KindInteger, true
	case 'U':
		return KindUnsigned, true
	case 'F':
		return KindFloat, true
	case 'B':
		return KindBoolean, true
	case 'O':
		return KindOpaque, true
	case 'T':
		return KindTime, true
	case 'L':
		return KindObjLink, true
	}
	return KindNone, false
}

// modelKind asks m about p's resource; paths above resource level have none.
func modelKind(m Model, p Path) (Kind, bool) {
	if p.Depth() < 3 {
		return KindNone, false
	}
	k, ok := m.Kind(p.Object, p.Resource)
	if !ok || k == KindNone {
		return KindNone, false
	}
	return k, true
}

// SingleValue reports whether p names exactly one value in the core OMA
// objects DefaultModel describes: a resource instance, or a resource
// their definitions make single-instance. A path it knows nothing of is
// not one, so a caller choosing a format falls back to one that carries
// any number of values.
func SingleValue(p Path) bool {
	switch p.Depth() {
	case 4:
		return true
	case 3:
	default:
		return false
	}
	if _, known := (defaultModel{}).Kind(p.Object, p.Resource); !known {
		return false
	}
	return !multipleResource(p.Object, p.Resource)
}

// multipleResource reports the Multiple resources of the objects
// DefaultModel knows (their registry definitions, versions as above).
func multipleResource(object, resource int32) bool {
	switch object {
	case 3: // Available Power Sources, Power Source Voltage/Current, Error Code, ExtDevInfo
		return resource == 6 || resource == 7 || resource == 8 || resource == 11 || resource == 22
	case 4: // Available Network Bearer, IP Addresses, Router IP Addresses, APN
		return resource == 1 || resource == 4 || resource == 5 || resource == 7
	case 5: // Firmware Update Protocol Support
		return resource == 8
	case 19: // Data
		return resource == 0
	}
	return false
}
