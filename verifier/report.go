package main

// The report: verify --json's document (docs/auditors.md, "The report"), field for field.

import (
	"bytes"
	"strconv"
)

var problemKinds = []string{
	"altered", "forged", "missing", "truncated", "conflict", "duplicate", "bad_signature",
	"expired_key", "key_mismatch", "malformed_checkpoint", "receipt", "unsigned", "not_covered",
	"writer_missing", "rollback", "fork", "unknown_writer", "bad_timestamp", "backdated",
	"not_timestamped", "bad_proof", "uncosigned",
}

// finding is a problem or a warning and where it was found (nil: not known).
type finding struct {
	kind      string
	detail    string
	topic     *string
	partition *int64
	offset    *int64
	writer    *string
	seq       *int64
	lastSeq   *int64
}

func (f finding) as(kind string) finding {
	f.kind = kind
	return f
}

func ptr[T any](v T) *T { return &v }

// report is what the check found.
type report struct {
	bundle           string
	trustedKeys      string
	topics           *manifestTopics
	signed           bool
	recordsChecked   int
	recordsValid     int
	checkpointsCheck int
	checkpointsValid int
	writers          int
	erasureRecords   int
	problems         []finding
	warnings         []finding
}

// doc writes JSON as Python's json.dumps(indent=2) does (ASCII, escapes for the rest), so
// the two verifiers' documents can be compared byte for byte too.
type doc struct {
	out    bytes.Buffer
	indent int
	first  []bool
}

func (d *doc) newline() {
	d.out.WriteByte('\n')
	for range d.indent {
		d.out.WriteString("  ")
	}
}

func (d *doc) open(c byte) {
	d.out.WriteByte(c)
	d.indent++
	d.first = append(d.first, true)
}

func (d *doc) close(c byte) {
	d.indent--
	empty := d.first[len(d.first)-1]
	d.first = d.first[:len(d.first)-1]
	if !empty {
		d.newline()
	}
	d.out.WriteByte(c)
}

func (d *doc) item() {
	if !d.first[len(d.first)-1] {
		d.out.WriteByte(',')
	}
	d.first[len(d.first)-1] = false
	d.newline()
}

func (d *doc) key(name string) {
	d.item()
	d.str(name)
	d.out.WriteString(": ")
}

func (d *doc) str(text string) {
	d.out.WriteByte('"')
	for _, c := range text {
		switch {
		case c == '"':
			d.out.WriteString(`\"`)
		case c == '\\':
			d.out.WriteString(`\\`)
		case c == '\n':
			d.out.WriteString(`\n`)
		case c == '\r':
			d.out.WriteString(`\r`)
		case c == '\t':
			d.out.WriteString(`\t`)
		case c == '\b':
			d.out.WriteString(`\b`)
		case c == '\f':
			d.out.WriteString(`\f`)
		case c < 0x20 || (c >= 0x80 && c < 0x10000):
			d.out.WriteString(`\u` + hex4(int(c)))
		case c >= 0x10000:
			c -= 0x10000
			d.out.WriteString(`\u` + hex4(0xd800+int(c>>10)) + `\u` + hex4(0xdc00+int(c&0x3ff)))
		default:
			d.out.WriteRune(c)
		}
	}
	d.out.WriteByte('"')
}

func hex4(n int) string {
	text := strconv.FormatInt(int64(n), 16)
	for len(text) < 4 {
		text = "0" + text
	}
	return text
}

func (d *doc) optString(v *string) {
	if v == nil {
		d.out.WriteString("null")
	} else {
		d.str(*v)
	}
}

func (d *doc) optInt(v *int64) {
	if v == nil {
		d.out.WriteString("null")
	} else {
		d.out.WriteString(strconv.FormatInt(*v, 10))
	}
}

func (d *doc) boolean(v bool) {
	if v {
		d.out.WriteString("true")
	} else {
		d.out.WriteString("false")
	}
}

func (d *doc) findings(list []finding) {
	d.open('[')
	for _, f := range list {
		d.item()
		d.open('{')
		d.key("kind")
		d.str(f.kind)
		d.key("detail")
		d.str(f.detail)
		d.key("topic")
		d.optString(f.topic)
		d.key("partition")
		d.optInt(f.partition)
		d.key("offset")
		d.optInt(f.offset)
		d.key("writer")
		d.optString(f.writer)
		d.key("seq")
		d.optInt(f.seq)
		d.key("last_seq")
		d.optInt(f.lastSeq)
		d.close('}')
	}
	d.close(']')
}

// JSON: the document of verify --bundle FILE --json.
func (r *report) JSON() []byte {
	var d doc
	var topics manifestTopics
	if r.topics != nil {
		topics = *r.topics
	}
	d.open('{')
	d.key("bundle")
	d.str(r.bundle)
	d.key("trusted_keys")
	d.str(r.trustedKeys)
	d.key("topic")
	d.optString(topics.audit)
	d.key("checkpoints_topic")
	d.optString(topics.checkpoints)
	d.key("writers_topic")
	d.optString(topics.writers)
	d.key("clean")
	d.boolean(len(r.problems) == 0)
	d.key("signed")
	d.boolean(r.signed)
	for _, counter := range []struct {
		name  string
		value int
	}{
		{"records_checked", r.recordsChecked}, {"records_valid", r.recordsValid},
		{"checkpoints_checked", r.checkpointsCheck}, {"checkpoints_valid", r.checkpointsValid},
		{"receipts_checked", 0}, {"writers", r.writers},
		// Timestamp tokens are checked by verify --tsa-ca on topics, never in a bundle.
		{"timestamps_checked", 0}, {"timestamps_valid", 0}, {"erasure_records", r.erasureRecords},
	} {
		d.key(counter.name)
		d.out.WriteString(strconv.Itoa(counter.value))
	}
	d.key("problem_counts")
	d.open('{')
	for _, kind := range problemKinds {
		count := 0
		for _, p := range r.problems {
			if p.kind == kind {
				count++
			}
		}
		d.key(kind)
		d.out.WriteString(strconv.Itoa(count))
	}
	d.close('}')
	d.key("problems")
	d.findings(r.problems)
	d.key("warnings")
	d.findings(r.warnings)
	d.close('}')
	d.out.WriteByte('\n')
	return d.out.Bytes()
}
