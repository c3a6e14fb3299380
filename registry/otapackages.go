package registry

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iotgate/iotgate/registry/kv"
)

// OTA packages (IoTDA's /ota-upgrades/packages): a firmware or software
// image of a product, with its version. IoTDA references a file in its
// object storage (OBS); iotgate keeps the file itself, in pieces in the
// store, with its size and SHA-256, so its devices download it from the
// platform (LwM2M object 5, lwm2m/firmware.go).

// Package types (IoTDA's package_type).
const (
	PackageTypeFirmware = "firmwarePackage"
	PackageTypeSoftware = "softwarePackage"
)

// Package limits.
const (
	// MaxPackageBytes bounds one package's file: a pull delivery serves
	// it from memory (see OTAPackageImage), and NB-IoT images are a few
	// hundred KiB.
	MaxPackageBytes = 64 << 20
	// packageChunk is the size of one stored piece of a file, and
	// chunksPerWrite how many pieces one transaction writes: Badger caps a
	// transaction at about 10 MiB.
	packageChunk   = 256 << 10
	chunksPerWrite = 8
	maxVersion     = 256
	maxPackageText = 1024
	maxSourceVers  = 20
)

// OTAPackage is an upgrade package: IoTDA's OtaPackageInfo, plus the
// file iotgate stores.
type OTAPackage struct {
	PackageID             string    `json:"package_id"`
	ProjectID             string    `json:"app_id"`
	PackageType           string    `json:"package_type"`
	ProductID             string    `json:"product_id"`
	ModuleName            string    `json:"module_name,omitempty"`
	Version               string    `json:"version"`
	SupportSourceVersions []string  `json:"support_source_versions,omitempty"`
	Description           string    `json:"description,omitempty"`
	CustomInfo            string    `json:"custom_info,omitempty"`
	Created               time.Time `json:"created"`
	// FileSize and FileSHA256 (hex) describe the stored file.
	FileSize   int64  `json:"file_size"`
	FileSHA256 string `json:"file_sha256"`
}

// OTAPackageFilter narrows a package listing; PackageType is required
// (as IoTDA's), the rest match all when empty.
type OTAPackageFilter struct {
	PackageType, ProductID, Version string
}

func validatePackage(p *OTAPackage) error {
	switch p.PackageType {
	case PackageTypeFirmware, PackageTypeSoftware:
	case "":
		return invalid("package_type", "is required: firmwarePackage or softwarePackage")
	default:
		return invalid("package_type", "must be firmwarePackage or softwarePackage, not %q", p.PackageType)
	}
	if p.ProductID == "" {
		return invalid("product_id", "is required")
	}
	if err := checkVersion("version", p.Version); err != nil {
		return err
	}
	if len(p.SupportSourceVersions) > maxSourceVers {
		return invalid("support_source_versions", "at most %d versions", maxSourceVers)
	}
	for i, v := range p.SupportSourceVersions {
		if err := checkVersion(fmt.Sprintf("support_source_versions[%d]", i), v); err != nil {
			return err
		}
	}
	if err := checkName("module_name", p.ModuleName, maxVersion, false); err != nil {
		return err
	}
	for field, v := range map[string]string{"description": p.Description, "custom_info": p.CustomInfo} {
		if !utf8.ValidString(v) {
			return invalid(field, "is not valid UTF-8")
		}
		if utf8.RuneCountInString(v) > maxPackageText {
			return invalid(field, "must be at most %d characters", maxPackageText)
		}
	}
	return nil
}

// checkVersion: a version is 1 to 256 printable ASCII characters without
// spaces (it is a key part and a device compares it).
func checkVersion(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	if len(v) > maxVersion {
		return invalid(field, "must be at most %d characters", maxVersion)
	}
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return invalid(field, "may contain only printable ASCII characters without spaces")
		}
	}
	return nil
}

func packageKey(project, id string) []byte { return key(famOTAPackage, project, id) }
func packageVersionKey(p *OTAPackage) []byte {
	return key(famOTAVersion, p.ProductID, p.PackageType, p.Version)
}
func packageChunksPrefix(id string) []byte { return prefixKey(famOTAChunk, id) }
func packageChunkKey(id string, n int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return append(packageChunksPrefix(id), b[:]...)
}

// AddOTAPackage stores a package of project with its file, read from
// file to its end. wantSHA256, when given (hex), must be the file's
// SHA-256, else nothing is kept. The file's pieces are written first and
// the package record last, so a package is listed only once its whole
// file is stored; a failed upload leaves no package (its pieces are
// removed).
func (r *Registry) AddOTAPackage(ctx context.Context, project string, p OTAPackage, file io.Reader, wantSHA256 string) (*OTAPackage, error) {
	if err := validatePackage(&p); err != nil {
		return nil, err
	}
	wantSHA256 = strings.ToLower(wantSHA256)
	if wantSHA256 != "" {
		if b, err := hex.DecodeString(wantSHA256); err != nil || len(b) != sha256.Size {
			return nil, invalid("sha256", "must be 64 hex digits")
		}
	}
	if _, err := r.Product(ctx, project, p.ProductID); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	p.PackageID, p.ProjectID, p.Created = r.ids.Next(now), project, now
	h := sha256.New()
	size, err := r.writeChunks(ctx, p.PackageID, io.TeeReader(file, h))
	if err == nil && size == 0 {
		err = invalid("file", "is empty")
	}
	p.FileSize, p.FileSHA256 = size, hex.EncodeToString(h.Sum(nil))
	if err == nil && wantSHA256 != "" && subtle.ConstantTimeCompare([]byte(wantSHA256), []byte(p.FileSHA256)) != 1 {
		err = invalid("sha256", "the file's SHA-256 is %s, not %s: the upload was damaged or the checksum is wrong", p.FileSHA256, wantSHA256)
	}
	if err == nil {
		err = r.write(ctx, func(w Writer) error {
			if _, err := w.Get(packageVersionKey(&p)); err == nil {
				return &ConflictError{Field: UniquePackageVersion, Value: p.Version}
			} else if !errors.Is(err, kv.ErrNotFound) {
				return err
			}
			b, err := json.Marshal(&p)
			if err != nil {
				return err
			}
			if err := w.Set(packageKey(project, p.PackageID), b); err != nil {
				return err
			}
			return w.Set(packageVersionKey(&p), []byte(p.PackageID))
		})
	}
	if err != nil {
		r.dropChunks(p.PackageID)
		return nil, err
	}
	return &p, nil
}

// writeChunks stores file's bytes as pieces of package id, several per
// transaction, and returns how many it stored.
func (r *Registry) writeChunks(ctx context.Context, id string, file io.Reader) (int64, error) {
	var total int64
	buf := make([]byte, packageChunk*chunksPerWrite)
	for n := 0; ; {
		got, rerr := io.ReadFull(file, buf)
		if total+int64(got) > MaxPackageBytes {
			return total, invalid("file", "is larger than %d MiB", MaxPackageBytes>>20)
		}
		if got > 0 {
			first, data := n, buf[:got]
			if err := r.write(ctx, func(w Writer) error {
				for i, off := first, 0; off < len(data); i, off = i+1, off+packageChunk {
					end := min(off+packageChunk, len(data))
					if err := w.Set(packageChunkKey(id, i), data[off:end]); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return total, fmt.Errorf("storing package %s: %w", id, err)
			}
			n += (got + packageChunk - 1) / packageChunk
			total += int64(got)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return total, nil
		default:
			return total, invalid("file", "could not be read: %v", rerr)
		}
	}
}

// dropChunks removes a package's pieces, in bounded transactions; a
// failure is logged (the pieces are unreachable without their record).
func (r *Registry) dropChunks(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		n, err := r.deletePrefixBatch(ctx, packageChunksPrefix(id), 64)
		if err != nil {
			r.log.Warn("removing an OTA package's file", "package_id", id, "err", err)
			return
		}
		if n < 64 {
			return
		}
	}
}

func getPackage(rd Reader, project, id string) (*OTAPackage, error) {
	b, err := rd.Get(packageKey(project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityOTAPackage, ID: id}
	}
	if err != nil {
		return nil, err
	}
	var p OTAPackage
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode OTA package %s: %w", id, err)
	}
	return &p, nil
}

// OTAPackage returns a package of project.
func (r *Registry) OTAPackage(ctx context.Context, project, id string) (*OTAPackage, error) {
	var p *OTAPackage
	err := r.view(ctx, func(rd Reader) (err error) {
		p, err = getPackage(rd, project, id)
		return err
	})
	return p, err
}

// OTAPackageList is one page of packages.
type OTAPackageList struct {
	Packages []*OTAPackage
	Count    int64
	Marker   string
}

// OTAPackages lists project's packages of f's type, newest first.
func (r *Registry) OTAPackages(ctx context.Context, project string, f OTAPackageFilter, pg Page) (*OTAPackageList, error) {
	out := &OTAPackageList{}
	err := r.view(ctx, func(rd Reader) error {
		var from []byte
		if pg.Marker != "" {
			from = packageKey(project, pg.Marker)
		}
		skip := pg.Offset
		return rd.Scan(prefixKey(famOTAPackage, project), from, true, func(k, v []byte) (bool, error) {
			var p OTAPackage
			if err := json.Unmarshal(v, &p); err != nil {
				return false, fmt.Errorf("decode OTA package: %w", err)
			}
			if p.PackageID == pg.Marker || p.PackageType != f.PackageType ||
				(f.ProductID != "" && p.ProductID != f.ProductID) || (f.Version != "" && p.Version != f.Version) {
				return true, nil
			}
			out.Count++
			if skip > 0 {
				skip--
				return true, nil
			}
			if pg.Limit <= 0 || len(out.Packages) < pg.Limit {
				out.Packages = append(out.Packages, &p)
				out.Marker = p.PackageID
			}
			return true, nil
		})
	})
	return out, err
}

// DeleteOTAPackage removes a package and its file. A package an
// unfinished firmware upgrade delivers cannot be deleted (ErrInUse).
func (r *Registry) DeleteOTAPackage(ctx context.Context, project, id string) error {
	err := r.write(ctx, func(w Writer) error {
		p, err := getPackage(w, project, id)
		if err != nil {
			return err
		}
		if busy, err := packageInUse(w, project, id); err != nil {
			return err
		} else if busy != "" {
			return fmt.Errorf("%w: OTA package %s is delivered by firmware upgrade %s, which has not finished", ErrInUse, id, busy)
		}
		if err := w.Delete(packageKey(project, id)); err != nil {
			return err
		}
		return w.Delete(packageVersionKey(p))
	})
	if err != nil {
		return err
	}
	r.dropChunks(id)
	return nil
}

// OTAPackageImage returns a package (of any project) and its whole file,
// checked against its SHA-256.
func (r *Registry) OTAPackageImage(ctx context.Context, project, id string) (*OTAPackage, []byte, error) {
	var p *OTAPackage
	var img []byte
	err := r.view(ctx, func(rd Reader) error {
		var err error
		if p, err = getPackage(rd, project, id); err != nil {
			return err
		}
		img = make([]byte, 0, p.FileSize)
		return rd.Scan(packageChunksPrefix(id), nil, false, func(_, v []byte) (bool, error) {
			img = append(img, v...)
			return true, nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(img)
	if int64(len(img)) != p.FileSize || hex.EncodeToString(sum[:]) != p.FileSHA256 {
		return nil, nil, fmt.Errorf("OTA package %s: the stored file (%d bytes) does not match its size %d and SHA-256", id, len(img), p.FileSize)
	}
	return p, img, nil
}
