package main

// The container and members of an rg-bundle-v1 file (docs/auditors.md, "The format").

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"slices"
)

const (
	memberManifest    = "manifest.json"
	memberSignature   = "manifest.sig"
	memberKeys        = "keys.json"
	memberCheckpoints = "checkpoints.ndjson"
	memberWriters     = "writers.ndjson"
	memberRecords     = "records.ndjson"
	memberProofs      = "proofs.ndjson"
	memberOpened      = "opened.ndjson"
)

// listed: the members the manifest lists, in the order they are written.
var listed = []string{memberKeys, memberCheckpoints, memberWriters, memberRecords, memberProofs}

// optional: a member the manifest lists when the bundle holds it (an export with erasure on:
// the sealed fields opened, for people); its bytes are checked like any other member's.
var optional = []string{memberOpened}

var errNotBundle = errors.New("not an evidence bundle")

// streamed: the members read line by line as they are inflated, never whole (they hold a line
// per record: nearly all of a bundle's bytes).
var streamed = []string{memberRecords, memberProofs}

// memberSum is what the manifest states of a member: its SHA-256 and its size.
type memberSum struct {
	sha256 [32]byte
	size   int64
}

// bundle is a ZIP's members: the small ones read whole, by name; the first entry of each name
// (the one read); names seen twice; what was found of each member read (its sum, or that it
// cannot be read).
type bundle struct {
	members    map[string][]byte
	files      map[string]*zip.File
	order      []string
	twice      []string
	sums       map[string]memberSum
	unreadable map[string]bool
}

// readBundle reads the small members; errNotBundle when the archive is not a ZIP with a
// manifest.json.
func readBundle(archive io.ReaderAt, size int64) (*bundle, error) {
	zipped, err := zip.NewReader(archive, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, errNotBundle
	}
	found := &bundle{
		members: map[string][]byte{}, files: map[string]*zip.File{},
		sums: map[string]memberSum{}, unreadable: map[string]bool{},
	}
	for _, file := range zipped.File {
		if _, seen := found.files[file.Name]; seen {
			found.twice = append(found.twice, file.Name)
			continue
		}
		found.files[file.Name] = file
		found.order = append(found.order, file.Name)
		if slices.Contains(streamed, file.Name) {
			continue
		}
		content, err := readMember(file)
		if err != nil {
			// A bad CRC-32 or bad deflate data: a finding, not the end of the check.
			found.unreadable[file.Name] = true
			continue
		}
		found.members[file.Name] = content
		found.sums[file.Name] = memberSum{sha256.Sum256(content), int64(len(content))}
	}
	if _, ok := found.members[memberManifest]; !ok && !found.unreadable[memberManifest] {
		return nil, errNotBundle
	}
	return found, nil
}

// unreadableNames: the members that could not be read, in the archive's order.
func (b *bundle) unreadableNames() []string {
	var names []string
	for _, name := range b.order {
		if b.unreadable[name] {
			names = append(names, name)
		}
	}
	return names
}

// readable: the member is in the archive and could be read (a streamed one: once streamed).
func (b *bundle) readable(name string) bool {
	_, ok := b.sums[name]
	return ok
}

func readMember(file *zip.File) ([]byte, error) {
	reader, err := file.Open()
	if err != nil {
		return nil, err
	}
	defer func() { _ = reader.Close() }()
	var content bytes.Buffer
	if file.UncompressedSize64 < 1<<31 {
		content.Grow(int(file.UncompressedSize64) + 1) // what the directory says: one allocation
	}
	_, err = content.ReadFrom(reader)
	return content.Bytes(), err
}

// ndjsonLines: the lines of a member without their LF, numbered from 0.
func ndjsonLines(member []byte) [][]byte {
	if len(member) == 0 {
		return nil
	}
	parts := bytes.Split(member, []byte("\n"))
	if len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	return parts
}

// header is one Kafka header: its name and value (nil: null).
type header struct {
	name  string
	value []byte
}

// kafkaLine is one Kafka record of an NDJSON member.
type kafkaLine struct {
	topic     string
	partition int64
	offset    int64
	key       []byte
	value     []byte
	headers   []header
}

// isBase64Text: the standard alphabet, then at most two '='.
func isBase64Text(text string) bool {
	end := len(text)
	for i := 0; i < 2 && end > 0 && text[end-1] == '='; i++ {
		end--
	}
	for i := 0; i < end; i++ {
		c := text[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// unb64: base64 text or null; false for anything else.
func unb64(raw json.RawMessage) ([]byte, bool) {
	if isNull(raw) {
		return nil, true
	}
	text, ok := asString(raw)
	if !ok || !isBase64Text(text) {
		return nil, false
	}
	decoded, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, false
	}
	return decoded, true
}

// generalLine reads a record line in any JSON spelling.
func generalLine(raw []byte) (kafkaLine, bool) {
	var line kafkaLine
	data, err := object(raw)
	if err != nil || !hasFields(data, "topic", "partition", "offset", "timestamp", "key", "value", "headers") {
		return line, false
	}
	var ok bool
	if line.topic, ok = asString(data["topic"]); !ok {
		return line, false
	}
	var headers []json.RawMessage
	if json.Unmarshal(data["headers"], &headers) != nil || headers == nil {
		return line, false
	}
	for _, pair := range headers {
		var parts []json.RawMessage
		if json.Unmarshal(pair, &parts) != nil || len(parts) != 2 {
			return line, false
		}
		name, isText := asString(parts[0])
		if !isText {
			return line, false
		}
		value, isValue := unb64(parts[1])
		if !isValue {
			return line, false
		}
		line.headers = append(line.headers, header{name, value})
	}
	if line.partition, ok = asInt(data["partition"]); !ok {
		return line, false
	}
	if line.offset, ok = asInt(data["offset"]); !ok {
		return line, false
	}
	if _, ok = asInt(data["timestamp"]); !ok {
		return line, false
	}
	if line.key, ok = unb64(data["key"]); !ok {
		return line, false
	}
	if line.value, ok = unb64(data["value"]); !ok {
		return line, false
	}
	return line, true
}

// manifestTopics: the three topics a manifest names.
type manifestTopics struct {
	audit, checkpoints, writers *string
}

// manifest is what manifest.json says.
type manifest struct {
	keyID   string
	topics  manifestTopics
	members map[string]listedMember
}

type listedMember struct {
	sha256 string
	size   int64
}

func parseManifest(data []byte) (*manifest, bool) {
	found, err := object(data)
	if err != nil || !hasFields(found, "format", "created", "key_id", "query", "topics", "records", "members") {
		return nil, false
	}
	if format, _ := asString(found["format"]); format != "rg-bundle-v1" {
		return nil, false
	}
	m := &manifest{members: map[string]listedMember{}}
	var ok bool
	if m.keyID, ok = asString(found["key_id"]); !ok {
		return nil, false
	}
	topics, err := object(found["topics"])
	if err != nil || !hasFields(topics, "audit", "checkpoints", "writers") {
		return nil, false
	}
	for name, into := range map[string]**string{
		"audit": &m.topics.audit, "checkpoints": &m.topics.checkpoints, "writers": &m.topics.writers,
	} {
		text, isText := asString(topics[name])
		if !isText {
			return nil, false
		}
		*into = &text
	}
	members, err := object(found["members"])
	names := listed
	if _, held := members[memberOpened]; held {
		names = append(slices.Clone(listed), optional...)
	}
	if err != nil || !hasFields(members, names...) {
		return nil, false
	}
	for _, name := range names {
		entry, err := object(members[name])
		if err != nil || !hasFields(entry, "sha256", "size") {
			return nil, false
		}
		digest, isText := asString(entry["sha256"])
		if !isText || len([]rune(digest)) != 64 {
			return nil, false
		}
		size, isInt := asInt(entry["size"])
		if !isInt {
			return nil, false
		}
		m.members[name] = listedMember{digest, size}
	}
	if _, ok := asInt(found["records"]); !ok {
		return nil, false
	}
	return m, true
}
