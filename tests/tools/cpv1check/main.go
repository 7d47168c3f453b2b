// cpv1check reads v1 checkpoints as docs/integrity.md ("Checkpoints", "Record values") states
// them, with Go's standard library only (encoding/json's tokenizer, strict base64url,
// crypto/ed25519): an independent reader of the format, written from the docs, not from the
// Python code. One JSON request a line on stdin, one answer a line on stdout:
//
//	{"value": "<record value>", "key": "<Kafka key>", "public_key": "<64 hex>"}
//	-> {"ok": true, "signed": "<signed bytes>"} or {"ok": false, "error": "..."}
package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type request struct {
	Value     string `json:"value"`
	Key       string `json:"key"`
	PublicKey string `json:"public_key"`
}

type answer struct {
	OK     bool   `json:"ok"`
	Signed string `json:"signed,omitempty"`
	Error  string `json:"error,omitempty"`
}

var (
	hex32     = regexp.MustCompile(`^[0-9a-f]{32}$`)
	link      = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	seqText   = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
	rfc3339   = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`)
	signature = regexp.MustCompile(`^[A-Za-z0-9_-]{86}$`)
	integer   = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
)

// A parsed JSON value: map[string]any (no key twice), []any, string, json.Number, bool, nil.
func parse(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			obj := map[string]any{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key := k.(string)
				if _, seen := obj[key]; seen {
					return nil, fmt.Errorf("key %q twice", key)
				}
				if obj[key], err = parse(dec); err != nil {
					return nil, err
				}
			}
			_, err := dec.Token()
			return obj, err
		}
		if t == '[' {
			list := []any{}
			for dec.More() {
				v, err := parse(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil
	}
}

// The string escapes of docs/integrity.md "Record values".
func quote(s string, out *bytes.Buffer) {
	out.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			out.WriteString(`\"`)
		case r == '\\':
			out.WriteString(`\\`)
		case r == '\b':
			out.WriteString(`\b`)
		case r == '\t':
			out.WriteString(`\t`)
		case r == '\n':
			out.WriteString(`\n`)
		case r == '\f':
			out.WriteString(`\f`)
		case r == '\r':
			out.WriteString(`\r`)
		case r < 0x20:
			fmt.Fprintf(out, `\u%04x`, r)
		default:
			out.WriteRune(r)
		}
	}
	out.WriteByte('"')
}

// Canonical JSON of a checkpoint's values: objects with sorted keys, strings, integers.
func canonical(v any, out *bytes.Buffer) error {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys) // byte order of UTF-8 = code point order
		out.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				out.WriteByte(',')
			}
			quote(k, out)
			out.WriteByte(':')
			if err := canonical(t[k], out); err != nil {
				return err
			}
		}
		out.WriteByte('}')
	case string:
		quote(t, out)
	case json.Number:
		n, err := strconv.ParseInt(t.String(), 10, 64)
		if err != nil {
			return err
		}
		out.WriteString(strconv.FormatInt(n, 10))
	default:
		return fmt.Errorf("a checkpoint holds no %T", v)
	}
	return nil
}

func intField(obj map[string]any, name string) (int64, error) {
	n, ok := obj[name].(json.Number)
	if !ok || !integer.MatchString(n.String()) {
		return 0, fmt.Errorf("%s is not an integer", name)
	}
	return strconv.ParseInt(n.String(), 10, 64)
}

func stringField(obj map[string]any, name string, pattern *regexp.Regexp) (string, error) {
	s, ok := obj[name].(string)
	if !ok || (pattern != nil && !pattern.MatchString(s)) {
		return "", fmt.Errorf("%s is malformed", name)
	}
	return s, nil
}

func check(req request) (string, error) {
	dec := json.NewDecoder(strings.NewReader(req.Value))
	dec.UseNumber()
	value, err := parse(dec)
	if err != nil {
		return "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", fmt.Errorf("more than one JSON value")
	}
	obj, ok := value.(map[string]any)
	if !ok || len(obj) != 9 {
		return "", fmt.Errorf("not an object of nine fields")
	}
	version, err := intField(obj, "version")
	if err != nil || version != 1 {
		return "", fmt.Errorf("not version 1")
	}
	writer, err := stringField(obj, "writer", hex32)
	if err != nil {
		return "", err
	}
	seq, err := intField(obj, "seq")
	if err != nil || seq < 0 {
		return "", fmt.Errorf("bad seq")
	}
	count, err := intField(obj, "count")
	if err != nil || count != seq+1 {
		return "", fmt.Errorf("count is not seq + 1")
	}
	for name, pattern := range map[string]*regexp.Regexp{"chain": link, "time": rfc3339, "key_id": nil} {
		if _, err := stringField(obj, name, pattern); err != nil {
			return "", err
		}
	}
	void, ok := obj["void"].(map[string]any)
	if !ok {
		return "", fmt.Errorf("void is not an object")
	}
	for k, v := range void {
		s, ok := v.(string)
		if !seqText.MatchString(k) || !ok || !link.MatchString(s) {
			return "", fmt.Errorf("void entry %q malformed", k)
		}
	}
	sigText, err := stringField(obj, "signature", signature)
	if err != nil {
		return "", err
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(sigText)
	if err != nil {
		return "", fmt.Errorf("signature: %v", err)
	}
	if req.Key != writer {
		return "", fmt.Errorf("keyed %q, not by its writer", req.Key)
	}
	delete(obj, "signature")
	var signed bytes.Buffer
	if err := canonical(obj, &signed); err != nil {
		return "", err
	}
	public, err := hex.DecodeString(req.PublicKey)
	if err != nil || len(public) != ed25519.PublicKeySize {
		return "", fmt.Errorf("bad public key")
	}
	if !ed25519.Verify(public, signed.Bytes(), sig) {
		return signed.String(), fmt.Errorf("signature does not verify")
	}
	return signed.String(), nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 8<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		ans := answer{}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			ans.Error = err.Error()
		} else if signed, err := check(req); err != nil {
			ans.Error, ans.Signed = err.Error(), signed
		} else {
			ans.OK, ans.Signed = true, signed
		}
		if err := out.Encode(ans); err != nil {
			os.Exit(1)
		}
	}
}
