package registry

import (
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field rules from the IoTDA v5 API. They are domain rules: an id that is
// valid over REST must also be usable as an LwM2M endpoint name or an MQTT
// username, so every adapter relies on the same checks.

func isIDChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// checkID validates an identifier of [A-Za-z0-9_-]{1,max}.
func checkID(field, v string, max int, required bool) error {
	if v == "" {
		if required {
			return invalid(field, "is required")
		}
		return nil
	}
	if len(v) > max {
		return invalid(field, "must be at most %d characters", max)
	}
	for _, r := range v {
		if !isIDChar(r) {
			return invalid(field, "may contain only letters, digits, '_' and '-'")
		}
	}
	return nil
}

// nameChars is the punctuation IoTDA allows in names and descriptions
// besides letters (any script) and digits.
const nameChars = "_?'#().,&%@!- "

func checkName(field, v string, max int, required bool) error {
	if v == "" {
		if required {
			return invalid(field, "is required")
		}
		return nil
	}
	if !utf8.ValidString(v) {
		return invalid(field, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > max {
		return invalid(field, "must be at most %d characters", max)
	}
	for _, r := range v {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(nameChars, r) {
			return invalid(field, "contains %q; allowed are letters, digits and %s", r, strings.TrimSpace(nameChars))
		}
	}
	return nil
}

// checkText validates free text: valid UTF-8, no control characters.
func checkText(field, v string, max int) error {
	if !utf8.ValidString(v) {
		return invalid(field, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > max {
		return invalid(field, "must be at most %d characters", max)
	}
	for _, r := range v {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return invalid(field, "contains a control character")
		}
	}
	return nil
}

func checkSecret(field, v string) error {
	if len(v) < 8 || len(v) > 32 {
		return invalid(field, "must be 8 to 32 characters")
	}
	return checkID(field, v, 32, true)
}

// normFingerprint lower-cases a 40 (SHA-1) or 64 (SHA-256) hex fingerprint.
func normFingerprint(field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	v = strings.ToLower(v)
	if len(v) != 40 && len(v) != 64 {
		return "", invalid(field, "must be 40 (SHA-1) or 64 (SHA-256) hexadecimal characters")
	}
	if _, err := hex.DecodeString(v); err != nil {
		return "", invalid(field, "must be hexadecimal")
	}
	return v, nil
}
