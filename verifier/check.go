package main

// The check of a bundle, step by step as docs/auditors.md says.

import (
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
)

const genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// record is a record of records.ndjson whose position could be read.
type record struct {
	line     kafkaLine
	writer   string
	seq      int64
	digest   string // 64 hex
	chain    string // 64 hex
	schemaID int64  // -1: not framed
	altered  bool
}

type place struct {
	writer string
	seq    int64
}

// trusted is what the trusted checkpoints say.
type trusted struct {
	notes  map[string]map[string]bool // writer -> notes of its trusted version 2 checkpoints
	heads  map[string]treeHead        // note -> its tree head (origin <key name>/writer/<writer>)
	chains map[place]string
	voids  map[place]bool
	covers map[string]int64 // writer -> the highest seq of its trusted version 2 checkpoints
	proven map[string]*provenTree
}

// checker checks one bundle.
type checker struct {
	keys        map[string]trustedKey
	manifestKey ed25519.PublicKey
	strict      bool
	problems    []finding
	warnings    []finding
	topics      *manifestTopics
	rep         *report
}

func (c *checker) memberProblem(kind, member string, offset *int64) {
	c.problems = append(c.problems, finding{kind: kind, topic: ptr(member), offset: offset})
}

func at(line *kafkaLine, kind string, writer *string, seq *int64) finding {
	return finding{kind: kind, topic: ptr(line.topic), partition: ptr(line.partition), offset: ptr(line.offset), writer: writer, seq: seq}
}

// check runs every step over b.
func (c *checker) check(b *bundle) *report {
	c.rep = &report{}
	for _, name := range b.twice {
		c.memberProblem("forged", name, nil)
	}
	for _, name := range b.unreadable {
		c.memberProblem("altered", name, nil)
	}
	if m := c.manifest(b.members, b.unreadable); m != nil {
		c.topics = &m.topics
	}
	c.rep.topics = c.topics
	var audit, checkpointsTopic, writersTopic *string
	if c.topics != nil {
		audit, checkpointsTopic, writersTopic = c.topics.audit, c.topics.checkpoints, c.topics.writers
	}
	_ = audit
	signedBy := c.checkpoints(b.members[memberCheckpoints], checkpointsTopic, writersTopic)
	known := c.writersLog(b.members[memberWriters], signedBy.log)
	records, unplaced := c.records(b.members[memberRecords])
	c.problems = append(c.problems, signedBy.log.conclude()...)
	if !c.rep.signed {
		c.problems = append(c.problems, finding{kind: "unsigned", topic: checkpointsTopic})
	}
	c.rep.recordsChecked = len(records) + unplaced
	writers := map[string]bool{}
	for i := range records {
		writers[records[i].writer] = true
	}
	c.rep.writers = len(writers)
	c.rep.recordsValid = c.positions(records, signedBy.trusted)
	c.proofs(records, b.members[memberProofs], signedBy.trusted)
	if len(known) > 0 {
		var unknown []string
		for writer := range writers {
			if !known[writer] {
				unknown = append(unknown, writer)
			}
		}
		slices.Sort(unknown)
		topic := memberWriters
		if c.topics != nil {
			topic = *c.topics.writers
		}
		for _, writer := range unknown {
			f := finding{kind: "unknown_writer", topic: ptr(topic), writer: ptr(writer)}
			if c.strict {
				c.problems = append(c.problems, f)
			} else {
				c.warnings = append(c.warnings, f)
			}
		}
	}
	c.rep.problems, c.rep.warnings = c.problems, c.warnings
	return c.rep
}

// -- steps 2 and 3: the manifest and the members

func (c *checker) manifest(members map[string][]byte, unreadable []string) *manifest {
	data := members[memberManifest]
	m, ok := parseManifest(data)
	if !ok {
		c.memberProblem("forged", memberManifest, nil)
		return nil
	}
	if !c.manifestSigned(data, members, m.keyID) {
		c.memberProblem("bad_signature", memberManifest, nil)
	}
	names := make([]string, 0, len(m.members))
	for name := range m.members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		held, present := members[name]
		want := m.members[name]
		sum := sha256.Sum256(held)
		switch {
		case slices.Contains(unreadable, name):
			// Reported already: it cannot be read.
		case !present:
			c.memberProblem("missing", name, nil)
		case int64(len(held)) != want.size || hex.EncodeToString(sum[:]) != want.sha256:
			c.memberProblem("altered", name, nil)
		}
	}
	var extra []string
	for name := range members {
		if _, isListed := m.members[name]; name != memberManifest && name != memberSignature && !isListed {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		c.memberProblem("forged", name, nil)
	}
	return m
}

func (c *checker) manifestSigned(data []byte, members map[string][]byte, keyID string) bool {
	sig, present := members[memberSignature]
	if !present || len(sig) != 87 || sig[86] != '\n' {
		return false
	}
	key := c.manifestKey
	if key == nil {
		known, ok := c.keys[keyID]
		if !ok {
			return false
		}
		key = known.key
	}
	return verifies(key, data, string(sig[:86]))
}

// -- step 4: the checkpoints and the log of writers

type signedBy struct {
	trusted trusted
	log     *writersLog
}

func (c *checker) checkpoints(member []byte, topic, writersTopic *string) signedBy {
	found := signedBy{
		trusted: trusted{
			notes: map[string]map[string]bool{}, heads: map[string]treeHead{},
			chains: map[place]string{}, voids: map[place]bool{}, covers: map[string]int64{},
			proven: map[string]*provenTree{},
		},
		log: newWritersLog(writersTopic),
	}
	checks := newTrust(c.keys)
	voidLinks := map[place]string{}
	var kept []*checkpoint
	var where []finding
	heads := map[place]string{}
	for number, raw := range ndjsonLines(member) {
		line, ok := decodeLine(raw)
		if !ok {
			c.memberProblem("forged", memberCheckpoints, ptr(int64(number)))
			continue
		}
		c.rep.checkpointsCheck++
		here := finding{topic: topic, partition: ptr(line.partition), offset: ptr(line.offset)}
		if string(line.key) == "writers" && line.key != nil {
			if found.log.addNote(here, line.value, c.keys) {
				c.rep.checkpointsValid++
			}
			continue
		}
		cp, ok := parseCheckpoint(line.value)
		if !ok {
			c.problems = append(c.problems, here.as("malformed_checkpoint"))
			continue
		}
		here.writer, here.seq = ptr(cp.writer), ptr(cp.seq)
		if line.key == nil || string(line.key) != cp.writer {
			c.problems = append(c.problems, here.as("malformed_checkpoint"))
			continue
		}
		if kind := checks.check(cp); kind != "" {
			c.problems = append(c.problems, here.as(kind))
			continue
		}
		c.rep.checkpointsValid++
		c.rep.signed = true
		kept = append(kept, cp)
		where = append(where, here)
		found.trusted.chains[place{cp.writer, cp.seq}] = cp.chain
		for seq, value := range cp.void {
			n, _ := strconv.ParseInt(seq, 10, 64)
			found.trusted.voids[place{cp.writer, n}] = true
			if cp.version == 1 {
				voidLinks[place{cp.writer, n}] = value[7:]
			}
		}
		if cp.version == 2 {
			notes := found.trusted.notes[cp.writer]
			if notes == nil {
				notes = map[string]bool{}
				found.trusted.notes[cp.writer] = notes
			}
			notes[cp.note] = true
			if covered, seen := found.trusted.covers[cp.writer]; !seen || cp.seq > covered {
				found.trusted.covers[cp.writer] = cp.seq
			}
			// Parsed when the checkpoint was read: its origin is <key name>/writer/<writer>.
			parsed, _ := parseNote([]byte(cp.note))
			found.trusted.heads[cp.note], _ = parseTreeHead(parsed.text)
			// Two trusted trees of one writer with one size: a fork.
			size := place{cp.writer, cp.seq + 1}
			if root, seen := heads[size]; !seen {
				heads[size] = cp.tree
			} else if root != cp.tree {
				c.problems = append(c.problems, here.as("fork"))
			}
		}
	}
	// A checkpoint whose seq a version 1 void lists with another link than its chain.
	for i, cp := range kept {
		if link, void := voidLinks[place{cp.writer, cp.seq}]; void && link != cp.chain {
			c.problems = append(c.problems, where[i].as("conflict"))
		}
	}
	return found
}

func (c *checker) writersLog(member []byte, log *writersLog) map[string]bool {
	for number, raw := range ndjsonLines(member) {
		line, ok := decodeLine(raw)
		if !ok {
			c.memberProblem("forged", memberWriters, ptr(int64(number)))
			continue
		}
		log.addEntry(line.partition, line.offset, line.value)
	}
	return log.known
}

// -- steps 5 to 7: the records

func (c *checker) records(member []byte) ([]record, int) {
	var records []record
	unplaced := 0
	for number, raw := range ndjsonLines(member) {
		line, ok := decodeLine(raw)
		if !ok {
			c.memberProblem("forged", memberRecords, ptr(int64(number)))
			continue
		}
		if r, placed := c.record(line); placed {
			// Only the place of the line is needed from here on: its bytes can go.
			r.line.key, r.line.value, r.line.headers = nil, nil, nil
			records = append(records, r)
		} else {
			unplaced++
		}
	}
	return records, unplaced
}

var positionHeaders = []string{"rg-digest", "rg-writer", "rg-seq", "rg-chain"}

func isHex64(text string) bool {
	if len(text) != 64 {
		return false
	}
	for i := 0; i < 64; i++ {
		if !strings.ContainsRune(hexDigits, rune(text[i])) {
			return false
		}
	}
	return true
}

// unframed: a value in the Confluent wire format without its 5 bytes, and its schema id.
func unframed(value []byte) ([]byte, int64) {
	if len(value) >= 5 && value[0] == 0 {
		return value[5:], int64(binary.BigEndian.Uint32(value[1:5]))
	}
	return value, -1
}

func (c *checker) record(line kafkaLine) (record, bool) {
	counts := map[string]int{}
	fields := map[string][]byte{}
	present := map[string]bool{}
	for _, h := range line.headers {
		if slices.Contains(positionHeaders, h.name) {
			counts[h.name]++
			if !present[h.name] {
				present[h.name] = true
				fields[h.name] = h.value
			}
		}
	}
	for _, n := range counts {
		if n > 1 {
			c.problems = append(c.problems, at(&line, "forged", nil, nil))
			return record{}, false
		}
	}
	body, schemaID := unframed(line.value)
	sum := sha256.Sum256(body)
	actual := hex.EncodeToString(sum[:])
	altered := string(fields["rg-digest"]) != "sha256:"+actual
	if altered {
		c.problems = append(c.problems, at(&line, "altered", nil, nil))
	}
	r, ok := position(fields, present)
	if !ok {
		c.problems = append(c.problems, at(&line, "forged", nil, nil))
		return record{}, false
	}
	r.line, r.schemaID, r.altered = line, schemaID, altered
	if schemaID >= 0 {
		stated := strconv.FormatInt(schemaID, 10)
		contradicted := false
		for _, h := range line.headers {
			if h.name == "rg-schema-id" && (h.value == nil || string(h.value) != stated) {
				contradicted = true
			}
		}
		if contradicted {
			r.altered = true
			c.problems = append(c.problems, at(&line, "altered", ptr(r.writer), ptr(r.seq)))
		}
	}
	return r, true
}

func isASCII(raw []byte) bool {
	for _, b := range raw {
		if b >= 0x80 {
			return false
		}
	}
	return true
}

func position(fields map[string][]byte, present map[string]bool) (record, bool) {
	for _, name := range positionHeaders {
		if !present[name] || fields[name] == nil || !isASCII(fields[name]) {
			return record{}, false
		}
	}
	digest, writer := string(fields["rg-digest"]), string(fields["rg-writer"])
	seq, chain := string(fields["rg-seq"]), string(fields["rg-chain"])
	if !writerID.MatchString(writer) || !seqText.MatchString(seq) ||
		!strings.HasPrefix(chain, "sha256:") || !isHex64(chain[7:]) ||
		!strings.HasPrefix(digest, "sha256:") || !isHex64(digest[7:]) {
		return record{}, false
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return record{}, false
	}
	return record{writer: writer, seq: n, digest: digest[7:], chain: chain[7:]}, true
}

// linkOf: the chain link of position seq (docs/integrity.md, the chain link).
func linkOf(writer string, seq int64, prev, digest string) string {
	text := "rg-chain-v1\n" + writer + "\n" + strconv.FormatInt(seq, 10) + "\n" + prev + "\n" + digest
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

func (c *checker) positions(records []record, signed trusted) int {
	first := map[place]*record{}
	var order []place
	valid := 0
	for i := range records {
		r := &records[i]
		p := place{r.writer, r.seq}
		held, seen := first[p]
		if !seen {
			first[p] = r
			order = append(order, p)
			if !r.altered {
				valid++
			}
			continue
		}
		same := held.digest == r.digest && held.chain == r.chain
		if same && !r.altered && !held.altered {
			valid++
			c.problems = append(c.problems, at(&r.line, "duplicate", ptr(r.writer), ptr(r.seq)))
		} else if !r.altered {
			c.problems = append(c.problems, at(&r.line, "conflict", ptr(r.writer), ptr(r.seq)))
		}
	}
	// In seq order: after a link that does not follow, the next is checked by what comes after
	// it (as verify's walk does), so one break is one finding.
	slices.SortFunc(order, func(a, b place) int {
		if a.writer != b.writer {
			return strings.Compare(a.writer, b.writer)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	broken := map[place]bool{}
	for _, p := range order {
		r := first[p]
		prev := ""
		if p.seq == 0 {
			prev = genesis
		}
		before := place{p.writer, p.seq - 1}
		if held, ok := first[before]; ok && !held.altered && !broken[before] {
			prev = held.chain
		}
		if prev != "" && linkOf(p.writer, p.seq, prev, r.digest) != r.chain {
			broken[p] = true
			if !r.altered {
				valid--
			}
			c.problems = append(c.problems, at(&r.line, "forged", ptr(p.writer), ptr(p.seq)))
		}
		if chain, ok := signed.chains[p]; ok && chain != r.chain {
			c.problems = append(c.problems, at(&r.line, "conflict", ptr(p.writer), ptr(p.seq)))
		}
		if signed.voids[p] {
			c.problems = append(c.problems, at(&r.line, "conflict", ptr(p.writer), ptr(p.seq)))
		}
	}
	return valid
}

// -- step 7: the proofs

func (c *checker) proofs(records []record, member []byte, signed trusted) {
	proofs := map[place]string{}
	for number, raw := range ndjsonLines(member) {
		if writer, seq, proof, ok := fastProofLine(raw); ok {
			if _, seen := proofs[place{writer, seq}]; !seen {
				proofs[place{writer, seq}] = proof
			}
			continue
		}
		data, err := object(raw)
		if err != nil || !hasFields(data, "writer", "seq", "proof") {
			c.memberProblem("forged", memberProofs, ptr(int64(number)))
			continue
		}
		writer, isText := asString(data["writer"])
		proof, isProof := asString(data["proof"])
		seq, isInt := asInt(data["seq"])
		if !isText || !isProof || !isInt {
			c.memberProblem("forged", memberProofs, ptr(int64(number)))
			continue
		}
		if _, seen := proofs[place{writer, seq}]; !seen {
			proofs[place{writer, seq}] = proof
		}
	}
	for i := range records {
		r := &records[i]
		proof, ok := proofs[place{r.writer, r.seq}]
		if covered, signed := signed.covers[r.writer]; !ok && signed && covered >= r.seq {
			// A signed tree covers it, so a proof could have been given: none is not benign.
			c.problems = append(c.problems, at(&r.line, "bad_proof", ptr(r.writer), ptr(r.seq)))
			continue
		}
		if !ok {
			f := at(&r.line, "not_covered", ptr(r.writer), ptr(r.seq))
			if c.strict {
				c.problems = append(c.problems, f)
			} else {
				c.warnings = append(c.warnings, f)
			}
			continue
		}
		if !proves(proof, r, signed) {
			c.problems = append(c.problems, at(&r.line, "bad_proof", ptr(r.writer), ptr(r.seq)))
		}
	}
}

// proves: the tlog-proof shows r at its position in a tree a trusted checkpoint of its writer
// signed (the note is one of those checkpoints' notes, so it opens with a trusted key).
func proves(proof string, r *record, signed trusted) bool {
	head, checkpointNote, found := strings.Cut(proof, "\n\n")
	if !found || !signed.notes[r.writer][checkpointNote] {
		return false
	}
	if !isASCII([]byte(head)) {
		return false
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return false
	}
	rest := lines[1:]
	var extra []byte
	if len(rest) > 0 && strings.HasPrefix(rest[0], "extra ") {
		var ok bool
		if extra, ok = strictBase64(rest[0][6:]); !ok {
			return false
		}
		rest = rest[1:]
	}
	if extra == nil || len(rest) == 0 || !strings.HasPrefix(rest[0], "index ") {
		return false
	}
	indexText := rest[0][6:]
	if !decimal.MatchString(indexText) || len(rest)-1 > 63 {
		return false
	}
	index, err := strconv.ParseInt(indexText, 10, 64)
	if err != nil {
		return false
	}
	tree, ok := signed.heads[checkpointNote]
	if !ok {
		return false
	}
	// The leaf entry is exactly this record's at this index.
	want := "rg-leaf-v1\n" + r.writer + "\n" + strconv.FormatInt(r.seq, 10) + "\n" + r.digest
	if r.schemaID >= 0 {
		want += "\n" + strconv.FormatInt(r.schemaID, 10)
	}
	if string(extra) != want || index != r.seq {
		return false
	}
	proven := signed.proven[checkpointNote]
	if proven == nil {
		proven = newProvenTree(tree.size, tree.root)
		signed.proven[checkpointNote] = proven
	}
	return proven.includes(index, leafHash(extra), rest[1:])
}
