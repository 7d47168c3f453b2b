package main

// Reading JSON as the bundle's format asks: objects by member name (the last of two equal
// names wins, as Python's json module has it, except where a format refuses them), integers
// only as integer literals, and the canonical JSON that checkpoints are signed over.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

var errForm = errors.New("not of the form")

// object reads one JSON object; errForm for anything else (invalid UTF-8 included).
func object(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errForm
	}
	var found map[string]json.RawMessage
	if err := json.Unmarshal(data, &found); err != nil || found == nil {
		return nil, errForm
	}
	return found, nil
}

// hasFields: the object's members are exactly names.
func hasFields(found map[string]json.RawMessage, names ...string) bool {
	if len(found) != len(names) {
		return false
	}
	for _, name := range names {
		if _, ok := found[name]; !ok {
			return false
		}
	}
	return true
}

// asString: the value when it is a JSON string.
func asString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var text string
	if json.Unmarshal(raw, &text) != nil {
		return "", false
	}
	return text, true
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// asInt: the value when it is an integer literal (no fraction, no exponent, not a boolean).
func asInt(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, false
	}
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// noDuplicateNames: no object anywhere in data has a member name twice (a checkpoint refuses
// them: readers differ on which copy counts).
func noDuplicateNames(data []byte) bool {
	decoder := json.NewDecoder(bytes.NewReader(data))
	var walk func() bool
	walk = func() bool {
		token, err := decoder.Token()
		if err != nil {
			return false
		}
		delim, ok := token.(json.Delim)
		if !ok {
			return true
		}
		switch delim {
		case '{':
			seen := map[string]bool{}
			for decoder.More() {
				name, err := decoder.Token()
				if err != nil {
					return false
				}
				key, _ := name.(string)
				if seen[key] {
					return false
				}
				seen[key] = true
				if !walk() {
					return false
				}
			}
		case '[':
			for decoder.More() {
				if !walk() {
					return false
				}
			}
		}
		_, err = decoder.Token() // the closing delimiter
		return err == nil
	}
	if !walk() {
		return false
	}
	_, err := decoder.Token()
	return err == io.EOF
}

// canonical is a value of the canonical JSON encoder: string, int64, or a map of them.
type canonical = any

// canonicalJSON: sorted member names, no whitespace, UTF-8 as itself; only `"`, `\` and the
// control characters escaped (docs/integrity.md, record values).
func canonicalJSON(value canonical) []byte {
	var out bytes.Buffer
	writeCanonical(&out, value)
	return out.Bytes()
}

func writeCanonical(out *bytes.Buffer, value canonical) {
	switch v := value.(type) {
	case string:
		writeString(out, v)
	case int64:
		out.WriteString(strconv.FormatInt(v, 10))
	case map[string]canonical:
		names := make([]string, 0, len(v))
		for name := range v {
			names = append(names, name)
		}
		slices.Sort(names) // byte order of UTF-8 is code point order
		out.WriteByte('{')
		for i, name := range names {
			if i > 0 {
				out.WriteByte(',')
			}
			writeString(out, name)
			out.WriteByte(':')
			writeCanonical(out, v[name])
		}
		out.WriteByte('}')
	}
}

const hexDigits = "0123456789abcdef"

func writeString(out *bytes.Buffer, text string) {
	out.WriteByte('"')
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch c {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		default:
			if c < 0x20 {
				out.WriteString(`\u00`)
				out.WriteByte(hexDigits[c>>4])
				out.WriteByte(hexDigits[c&15])
			} else {
				out.WriteByte(c)
			}
		}
	}
	out.WriteByte('"')
}
