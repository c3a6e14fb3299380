package registry

import (
	"errors"
	"testing"
)

// Messages name the entity and the field as the API has always shown
// them; adapters tell kinds apart by the typed values, never the text.
func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  error
		want string
		is   error
	}{
		{&NotFoundError{Kind: EntityDevice, ID: "d1"}, `device "d1" does not exist`, ErrNotFound},
		{&NotFoundError{Kind: EntityNode, ID: "pk/n1"}, `node "pk/n1" does not exist`, ErrNotFound},
		{&NotFoundError{Kind: EntityFingerprint, ID: "ab"}, `fingerprint "ab" does not exist`, ErrNotFound},
		{&NotFoundError{Kind: EntityProduct, ID: "p1"}, `product "p1" does not exist`, ErrNotFound},
		{&NotFoundError{Kind: EntityCertificate, ID: "c1"}, `certificate "c1" does not exist`, ErrNotFound},
		{&NotFoundError{Kind: EntityCommand, ID: "x"}, `command "x" does not exist`, ErrNotFound},
		{&NotFoundError{Kind: EntityClientID, ID: "cid"}, `client_id "cid" does not exist`, ErrNotFound},
		{&NotFoundError{ID: "z"}, `Entity(0) "z" does not exist`, ErrNotFound},
		{&ConflictError{Field: UniqueDeviceID, Value: "d1"}, `device_id "d1" already exists`, ErrAlreadyExists},
		{&ConflictError{Field: UniqueNodeID, Value: "n1"}, `node_id "n1" already exists`, ErrAlreadyExists},
		{&ConflictError{Field: UniqueFingerprint, Value: "ab"}, `fingerprint "ab" already exists`, ErrAlreadyExists},
		{&ConflictError{Field: UniqueProductID, Value: "p1"}, `product_id "p1" already exists`, ErrAlreadyExists},
		{&ConflictError{Field: UniqueCertificate, Value: "c1"}, `certificate "c1" already exists`, ErrAlreadyExists},
		{&ConflictError{Value: "v"}, `UniqueField(0) "v" already exists`, ErrAlreadyExists},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %s, want %s", got, tt.want)
		}
		if !errors.Is(tt.err, tt.is) {
			t.Errorf("%s does not wrap %v", tt.err, tt.is)
		}
	}
}
