package registry

import "encoding/hex"

// PSK returns the DTLS pre-shared key of a device secret: the hex-decoded
// bytes when the secret is an even-length hex string (Huawei NB-IoT
// secrets are hex, and the reference clients decode them), else its UTF-8
// bytes. The LwM2M server checks keys with it and the activation centre's
// LwM2M Bootstrap server writes keys with it, so the two always agree.
func PSK(secret string) []byte {
	if len(secret)%2 == 0 {
		if b, err := hex.DecodeString(secret); err == nil && len(b) > 0 {
			return b
		}
	}
	return []byte(secret)
}
