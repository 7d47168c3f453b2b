package main

// Checkpoints of the checkpoints topic (docs/integrity.md, versions 1 and 2): read strictly,
// trusted by their signature, their key's validity and their writer's key.

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const maxCheckpointBytes = 4 * 1024 * 1024

var (
	seqText   = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
	signature = regexp.MustCompile(`^[A-Za-z0-9_-]{85}[AQgw]$`)
	b64url    = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)
	rfc3339   = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`)
	voidV2    = regexp.MustCompile(`^sha256:([0-9a-f]{64})(?:;schema-id=(0|[1-9][0-9]{0,9}))?$`)
)

var v1Fields = []string{"version", "writer", "seq", "count", "chain", "time", "key_id", "void", "signature"}

// checkpoint is a checkpoint as read; chain and tree in hex, void by seq (the wire text).
type checkpoint struct {
	version int64
	writer  string
	seq     int64
	chain   string
	tree    string // "" for version 1
	time    string
	moment  time.Time
	keyID   string
	void    map[string]string // seq text -> value as written
	note    string
	sig     string
}

func (c *checkpoint) signedBytes() []byte {
	void := map[string]canonical{}
	for seq, value := range c.void {
		void[seq] = value
	}
	fields := map[string]canonical{
		"version": c.version,
		"writer":  c.writer,
		"seq":     c.seq,
		"count":   c.seq + 1,
		"chain":   "sha256:" + c.chain,
		"time":    c.time,
		"key_id":  c.keyID,
		"void":    void,
	}
	if c.version == 2 {
		fields["tree"] = "sha256:" + c.tree
		fields["note"] = c.note
	}
	return canonicalJSON(fields)
}

func prefixedHex(raw json.RawMessage) (string, bool) {
	text, ok := asString(raw)
	if !ok || !strings.HasPrefix(text, "sha256:") || !hex64.MatchString(text[7:]) {
		return "", false
	}
	return text[7:], true
}

// parseMoment: RFC 3339 with its offset, to the microsecond.
func parseMoment(text string) (time.Time, bool) {
	if !rfc3339.MatchString(text) {
		return time.Time{}, false
	}
	moment, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return time.Time{}, false
	}
	return moment.UTC().Truncate(time.Microsecond), true
}

// parseCheckpoint: the checkpoint, or false when the bytes are not exactly one.
func parseCheckpoint(value []byte) (*checkpoint, bool) {
	if value == nil || len(value) > maxCheckpointBytes || !noDuplicateNames(value) {
		return nil, false
	}
	data, err := object(value)
	if err != nil {
		return nil, false
	}
	version, _ := asInt(data["version"])
	v2 := version == 2 && strings.TrimSpace(string(data["version"])) != "true"
	fields := v1Fields
	if v2 {
		fields = append(append([]string{}, v1Fields...), "tree", "note")
	}
	if !hasFields(data, fields...) {
		return nil, false
	}
	c := &checkpoint{void: map[string]string{}}
	var ok bool
	var voids map[string]json.RawMessage
	if json.Unmarshal(data["void"], &voids) != nil || voids == nil {
		return nil, false
	}
	for seq, raw := range voids {
		if !seqText.MatchString(seq) {
			return nil, false
		}
		text, isText := asString(raw)
		if !isText {
			return nil, false
		}
		if v2 {
			found := voidV2.FindStringSubmatch(text)
			if found == nil {
				return nil, false
			}
			if found[2] != "" {
				if id, err := strconv.ParseUint(found[2], 10, 64); err != nil || id > 1<<32-1 {
					return nil, false
				}
			}
		} else if _, isHex := prefixedHex(raw); !isHex {
			return nil, false
		}
		// Python reads the seq as an int: a key spelt twice after parsing is one entry.
		c.void[seq] = text
	}
	if c.version, ok = asInt(data["version"]); !ok {
		return nil, false
	}
	if c.writer, ok = asString(data["writer"]); !ok {
		return nil, false
	}
	if c.seq, ok = asInt(data["seq"]); !ok {
		return nil, false
	}
	if c.chain, ok = prefixedHex(data["chain"]); !ok {
		return nil, false
	}
	if c.time, ok = asString(data["time"]); !ok {
		return nil, false
	}
	if c.keyID, ok = asString(data["key_id"]); !ok {
		return nil, false
	}
	if c.sig, ok = asString(data["signature"]); !ok {
		return nil, false
	}
	if v2 {
		if c.tree, ok = prefixedHex(data["tree"]); !ok {
			return nil, false
		}
		if c.note, ok = asString(data["note"]); !ok {
			return nil, false
		}
	}
	if c.version != 1 && c.version != 2 {
		return nil, false
	}
	if !writerID.MatchString(c.writer) || c.seq < 0 {
		return nil, false
	}
	if count, isInt := asInt(data["count"]); !isInt || count != c.seq+1 {
		return nil, false
	}
	if !signature.MatchString(c.sig) {
		return nil, false
	}
	if c.moment, ok = parseMoment(c.time); !ok {
		return nil, false
	}
	if v2 && !c.noteSaysFields() {
		return nil, false
	}
	return c, true
}

// noteSaysFields: a version 2 checkpoint's note is its tree head, one signature line.
func (c *checkpoint) noteSaysFields() bool {
	parsed, err := parseNote([]byte(c.note))
	if err != nil || len(parsed.signatures) != 1 {
		return false
	}
	head, err := parseTreeHead(parsed.text)
	if err != nil {
		return false
	}
	tree, _ := hex.DecodeString(c.tree)
	return head.origin == parsed.signatures[0].name+"/writer/"+c.writer &&
		head.size == c.seq+1 && string(head.root) == string(tree) && head.extensions == 0
}

// keyName: the key name of a version 2 checkpoint's note.
func (c *checkpoint) keyName() string {
	parsed, _ := parseNote([]byte(c.note))
	return parsed.signatures[0].name
}

// unb64url: unpadded base64url in its one spelling.
func unb64url(text string) ([]byte, bool) {
	if !b64url.MatchString(text) {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(text)
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != text {
		return nil, false
	}
	return raw, true
}

func verifies(key ed25519.PublicKey, signed []byte, sig string) bool {
	raw, ok := unb64url(sig)
	return ok && len(raw) == ed25519.SignatureSize && ed25519.Verify(key, signed, raw)
}

// trustedKey is a key to trust: its public key and the end of its validity (zero: none).
type trustedKey struct {
	key   ed25519.PublicKey
	until time.Time
}

// trust decides which checkpoints to trust, fed in the order of the checkpoints topic.
type trust struct {
	keys       map[string]trustedKey
	writerKeys map[string]string
	latest     time.Time
}

func newTrust(keys map[string]trustedKey) *trust {
	return &trust{keys: keys, writerKeys: map[string]string{}}
}

// check: "" when trusted (then remembered), else the kind of problem.
func (t *trust) check(c *checkpoint) string {
	key, known := t.keys[c.keyID]
	if !known || !verifies(key.key, c.signedBytes(), c.sig) {
		return "bad_signature"
	}
	if c.version == 2 && !opens([]byte(c.note), c.keyName(), key.key) {
		return "bad_signature"
	}
	if !key.until.IsZero() {
		if c.moment.After(key.until) || (!t.latest.IsZero() && t.latest.After(key.until)) {
			return "expired_key"
		}
	}
	bound, seen := t.writerKeys[c.writer]
	if !seen {
		t.writerKeys[c.writer] = c.keyID
	} else if bound != c.keyID {
		return "key_mismatch"
	}
	if t.latest.IsZero() || c.moment.After(t.latest) {
		t.latest = c.moment
	}
	return ""
}
