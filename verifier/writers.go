package main

// The log of writers (docs/integrity.md): its entries, its tree over the writers topic's values
// and the signed notes of that tree kept on the checkpoints topic (keyed "writers").

import (
	"crypto/sha256"
	"encoding/hex"
)

// writersNote is a trusted note of the log of writers and where it was read.
type writersNote struct {
	size  int64
	root  string // 64 hex
	where finding
}

// writersLog collects the writers topic's entries and the notes of its tree.
type writersLog struct {
	topic  *string
	read   bool
	leaves [][32]byte
	hole   bool
	known  map[string]bool
	notes  []writersNote
	found  []finding
}

func newWritersLog(topic *string) *writersLog {
	return &writersLog{topic: topic, known: map[string]bool{}}
}

func leafHash(entry []byte) [32]byte {
	var buf [256]byte
	return sha256.Sum256(append(append(buf[:0], 0), entry...))
}

func nodeHash(left, right [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}

// treeRoot: RFC 6962's root of leaves.
func treeRoot(leaves [][32]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	split := 1
	for split*2 < len(leaves) {
		split *= 2
	}
	return nodeHash(treeRoot(leaves[:split]), treeRoot(leaves[split:]))
}

// addEntry: one line of writers.ndjson, in order.
func (w *writersLog) addEntry(partition, offset int64, value []byte) {
	w.read = true
	if !w.hole && (partition != 0 || offset != int64(len(w.leaves))) {
		w.hole = true
	}
	if !w.hole {
		w.leaves = append(w.leaves, leafHash(value))
	}
	writer, ok := parseWriterEntry(value)
	if !ok {
		w.found = append(w.found, finding{kind: "forged", topic: w.topic, partition: &partition, offset: &offset})
		return
	}
	w.known[writer] = true
}

// parseWriterEntry: the writer of a start, head or stop entry.
func parseWriterEntry(value []byte) (string, bool) {
	if value == nil || len(value) > maxCheckpointBytes {
		return "", false
	}
	data, err := object(value)
	if err != nil {
		return "", false
	}
	kind, _ := asString(data["kind"])
	switch kind {
	case "start":
		if !hasFields(data, "kind", "writer", "time", "origin") {
			return "", false
		}
	case "head", "stop":
		if !hasFields(data, "kind", "writer", "time", "size", "root") {
			return "", false
		}
	default:
		return "", false
	}
	writer, ok := asString(data["writer"])
	if !ok || !writerID.MatchString(writer) {
		return "", false
	}
	if _, ok := asString(data["time"]); !ok {
		return "", false
	}
	if kind == "start" {
		_, ok := asString(data["origin"])
		return writer, ok
	}
	if size, ok := asInt(data["size"]); !ok || size < 0 {
		return "", false
	}
	if _, ok := prefixedHex(data["root"]); !ok {
		return "", false
	}
	return writer, true
}

// addNote: a line of checkpoints.ndjson keyed "writers"; true when trusted.
func (w *writersLog) addNote(where finding, value []byte, keys map[string]trustedKey) bool {
	note, keyID, sig, signed, ok := parseWritersNote(value)
	if !ok {
		where.kind = "malformed_checkpoint"
		w.found = append(w.found, where)
		return false
	}
	key, known := keys[keyID]
	if !known || !verifies(key.key, signed, sig) || !opens([]byte(note.text), note.name, key.key) {
		where.kind = "bad_signature"
		w.found = append(w.found, where)
		return false
	}
	where.kind = ""
	w.notes = append(w.notes, writersNote{note.size, note.root, where})
	return true
}

type parsedWritersNote struct {
	size int64
	root string
	text string // the whole note
	name string
}

func parseWritersNote(value []byte) (parsedWritersNote, string, string, []byte, bool) {
	var none parsedWritersNote
	if value == nil || len(value) > maxCheckpointBytes {
		return none, "", "", nil, false
	}
	data, err := object(value)
	if err != nil || !hasFields(data, "version", "log", "size", "root", "time", "key_id", "note", "signature") {
		return none, "", "", nil, false
	}
	version, isInt := asInt(data["version"])
	logName, _ := asString(data["log"])
	if !isInt || version != 2 || logName != "writers" {
		return none, "", "", nil, false
	}
	size, ok := asInt(data["size"])
	if !ok || size < 0 {
		return none, "", "", nil, false
	}
	root, ok := prefixedHex(data["root"])
	if !ok {
		return none, "", "", nil, false
	}
	texts := map[string]string{}
	for _, name := range []string{"time", "key_id", "note", "signature"} {
		if texts[name], ok = asString(data[name]); !ok {
			return none, "", "", nil, false
		}
	}
	parsed, err := parseNote([]byte(texts["note"]))
	if err != nil || len(parsed.signatures) != 1 {
		return none, "", "", nil, false
	}
	head, err := parseTreeHead(parsed.text)
	rootBytes, _ := hex.DecodeString(root)
	name := parsed.signatures[0].name
	if err != nil || head.origin != name+"/writers" || head.size != size ||
		string(head.root) != string(rootBytes) || head.extensions != 0 {
		return none, "", "", nil, false
	}
	signed := canonicalJSON(map[string]canonical{
		"version": int64(2), "log": "writers", "size": size, "root": "sha256:" + root,
		"time": texts["time"], "key_id": texts["key_id"], "note": texts["note"],
	})
	return parsedWritersNote{size, root, texts["note"], name}, texts["key_id"], texts["signature"], signed, true
}

// conclude: what the log and its notes say, once everything is read (a bundle holds no whole
// audit topic: no writer_missing, no rollback of a writer).
func (w *writersLog) conclude() []finding {
	found := append([]finding{}, w.found...)
	first := map[int64]string{}
	for _, note := range w.notes {
		kept, seen := first[note.size]
		if !seen {
			first[note.size] = note.root
		} else if kept != note.root {
			found = append(found, note.where.as("fork"))
		}
	}
	switch {
	case w.hole:
		found = append(found, finding{kind: "rollback", topic: w.topic})
	case !w.read:
		if len(w.notes) > 0 {
			found = append(found, w.notes[len(w.notes)-1].where.as("rollback"))
		}
	default:
		for _, note := range w.notes {
			if note.size > int64(len(w.leaves)) {
				found = append(found, note.where.as("rollback"))
			} else if root := treeRoot(w.leaves[:note.size]); hex.EncodeToString(root[:]) != note.root {
				found = append(found, note.where.as("fork"))
			}
		}
	}
	return found
}
