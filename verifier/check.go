package main

// The check of a bundle, step by step as docs/auditors.md says. The members that hold a line
// per record are read as streams, in the order the steps need them; each step's findings are
// gathered apart and reported in the order of the steps.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
)

const genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// record is a record of records.ndjson whose position could be read: where it is, and what
// its headers and value say (its bytes are not kept).
type record struct {
	topic     string
	partition int64
	offset    int64
	writer    string
	seq       int64
	digest    [32]byte
	chain     [32]byte
	schemaID  int64 // -1: not framed
	altered   bool
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
	decoder     *lineDecoder
	lines       [][]byte // a proof's lines
	scratch     []byte   // a proof's leaf entry, decoded
	want        []byte   // the leaf entry a record's proof must hold
	note        *noteTree
}

// noteTree: a trusted note of a writer's checkpoint, and the tree it signs.
type noteTree struct {
	writer, text string
	tree         *provenTree
}

func (c *checker) memberProblem(kind, member string, offset *int64) {
	c.problems = append(c.problems, finding{kind: kind, topic: ptr(member), offset: offset})
}

func at(line *kafkaLine, kind string, writer *string, seq *int64) finding {
	return finding{kind: kind, topic: ptr(line.topic), partition: ptr(line.partition), offset: ptr(line.offset), writer: writer, seq: seq}
}

// at: a finding at r's line, with its writer and seq.
func (r *record) at(kind string) finding {
	return finding{kind: kind, topic: ptr(r.topic), partition: ptr(r.partition), offset: ptr(r.offset), writer: ptr(r.writer), seq: ptr(r.seq)}
}

// section: the problems step finds, apart from those found before.
func (c *checker) section(step func()) []finding {
	before := c.problems
	c.problems = nil
	step()
	found := c.problems
	c.problems = before
	return found
}

// check runs every step over b.
func (c *checker) check(b *bundle) *report {
	c.rep = &report{}
	c.decoder = newLineDecoder()
	m, parsed := parseManifest(b.members[memberManifest])
	if parsed {
		c.topics = &m.topics
	}
	c.rep.topics = c.topics
	var checkpointsTopic, writersTopic *string
	if c.topics != nil {
		checkpointsTopic, writersTopic = c.topics.checkpoints, c.topics.writers
	}
	var signedBy signedBy
	var known map[string]bool
	fromCheckpoints := c.section(func() {
		signedBy = c.checkpoints(b.members[memberCheckpoints], checkpointsTopic, writersTopic)
		known = c.writersLog(b.members[memberWriters], signedBy.log)
	})
	var set *recordSet
	fromRecords := c.section(func() { set = c.records(b) })
	fromProofLines := c.section(func() { c.proofLines(b, set, signedBy.trusted) })
	// The manifest once every member has been read (the streamed ones' sums are known).
	fromManifest := c.section(func() { c.manifest(b, m, parsed) })
	for _, name := range b.twice {
		c.memberProblem("forged", name, nil)
	}
	for _, name := range b.unreadableNames() {
		c.memberProblem("altered", name, nil)
	}
	c.problems = append(c.problems, fromManifest...)
	c.problems = append(c.problems, fromCheckpoints...)
	c.problems = append(c.problems, fromRecords...)
	c.problems = append(c.problems, signedBy.log.conclude()...)
	if !c.rep.signed {
		c.problems = append(c.problems, finding{kind: "unsigned", topic: checkpointsTopic})
	}
	c.rep.recordsChecked = len(set.list) + set.unplaced
	c.rep.erasureRecords = set.erasures
	writers := map[string]bool{}
	for i := range set.list {
		writers[set.list[i].writer] = true
	}
	c.rep.writers = len(writers)
	c.rep.recordsValid = c.positions(set, signedBy.trusted)
	c.problems = append(c.problems, fromProofLines...)
	c.proofFindings(set, signedBy.trusted)
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

func (c *checker) manifest(b *bundle, m *manifest, parsed bool) {
	if !parsed {
		c.memberProblem("forged", memberManifest, nil)
		return
	}
	if !c.manifestSigned(b.members[memberManifest], b.members, m.keyID) {
		c.memberProblem("bad_signature", memberManifest, nil)
	}
	names := make([]string, 0, len(m.members))
	for name := range m.members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		held, want := b.sums[name], m.members[name]
		switch {
		case b.unreadable[name]:
			// Reported already: it cannot be read.
		case !b.readable(name):
			c.memberProblem("missing", name, nil)
		case held.size != want.size || hex.EncodeToString(held.sha256[:]) != want.sha256:
			c.memberProblem("altered", name, nil)
		}
	}
	var extra []string
	for _, name := range b.order {
		if _, isListed := m.members[name]; b.readable(name) && name != memberManifest && name != memberSignature && !isListed {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		c.memberProblem("forged", name, nil)
	}
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

// recordSet: the placed records in the member's order, how many lines had no position, the
// first record at each place (writer, then seq) and the others at it, and what each one's
// proof showed.
type recordSet struct {
	list     []record
	unplaced int
	erasures int // erasure records among the placed ones
	first    map[string]*seqIndex
	next     []int32 // the next record at the same place; -1: none
	proof    []uint8 // noProof, proven or notProven
}

const (
	noProof uint8 = iota
	proven
	notProven
)

// records reads records.ndjson as it is inflated; if it cannot be read to its end, what its
// lines said is forgotten (it is reported altered, as a member that cannot be read).
func (c *checker) records(b *bundle) *recordSet {
	set := &recordSet{}
	read := b.streamLines(memberRecords, func(number int, raw []byte) {
		line, ok := c.decoder.decode(raw)
		if !ok {
			c.memberProblem("forged", memberRecords, ptr(int64(number)))
			return
		}
		if r, placed := c.record(&line); placed {
			set.list = append(set.list, r)
			if body, _ := unframed(line.value); isErasureRecord(body) {
				set.erasures++
			}
		} else {
			set.unplaced++
		}
	})
	if !read {
		set, c.problems = &recordSet{}, nil
	}
	set.first, set.next = indexPlaces(set.list)
	set.proof = make([]uint8, len(set.list))
	return set
}

var positionHeaders = [4]string{"rg-digest", "rg-writer", "rg-seq", "rg-chain"}

func isHex(text []byte, length int) bool {
	if len(text) != length {
		return false
	}
	for _, b := range text {
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f') {
			return false
		}
	}
	return true
}

func isHex64(text string) bool {
	return isHex([]byte(text), 64)
}

// isSeq: 0 or digits without a leading zero (as seqText).
func isSeq(text []byte) bool {
	return len(text) > 0 && isDigits(text) && (text[0] != '0' || len(text) == 1)
}

func isDigits(text []byte) bool {
	for _, b := range text {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}

// parseDigits: digits (at most 19) as an int64; false when they exceed it.
func parseDigits(text []byte) (int64, bool) {
	if len(text) == 0 || len(text) > 19 {
		return 0, false
	}
	var n uint64
	for _, b := range text {
		n = n*10 + uint64(b-'0')
	}
	return int64(n), n <= 1<<63-1
}

// erasureModel: an erasure record's model in its canonical JSON: a cheap first test, the
// parse decides (metadata may hold the same text).
var erasureModel = []byte(`"model":"rg-erasure/v1"`)

// isErasureRecord: the value is an erasure record's (a JSON object whose model is
// rg-erasure/v1, docs/privacy.md), as verify counts them.
func isErasureRecord(body []byte) bool {
	if !bytes.Contains(body, erasureModel) {
		return false
	}
	found, err := object(body)
	if err != nil {
		return false
	}
	model, ok := asString(found["model"])
	return ok && model == "rg-erasure/v1"
}

// unframed: a value in the Confluent wire format without its 5 bytes, and its schema id.
func unframed(value []byte) ([]byte, int64) {
	if len(value) >= 5 && value[0] == 0 {
		return value[5:], int64(binary.BigEndian.Uint32(value[1:5]))
	}
	return value, -1
}

// sha256Text: "sha256:" and the lowercase hex of sum.
func sha256Text(sum *[32]byte) [71]byte {
	var text [71]byte
	copy(text[:], "sha256:")
	hex.Encode(text[7:], sum[:])
	return text
}

func (c *checker) record(line *kafkaLine) (record, bool) {
	var fields [4][]byte
	var counts [4]int
	for _, h := range line.headers {
		for i, name := range positionHeaders {
			if h.name == name {
				if counts[i]++; counts[i] == 1 {
					fields[i] = h.value
				}
			}
		}
	}
	for _, n := range counts {
		if n > 1 {
			c.problems = append(c.problems, at(line, "forged", nil, nil))
			return record{}, false
		}
	}
	body, schemaID := unframed(line.value)
	sum := sha256.Sum256(body)
	actual := sha256Text(&sum)
	altered := string(fields[0]) != string(actual[:])
	if altered {
		c.problems = append(c.problems, at(line, "altered", nil, nil))
	}
	r, ok := c.position(fields, counts)
	if !ok {
		c.problems = append(c.problems, at(line, "forged", nil, nil))
		return record{}, false
	}
	r.topic, r.partition, r.offset = line.topic, line.partition, line.offset
	r.schemaID, r.altered = schemaID, altered
	if schemaID >= 0 {
		var buf [20]byte
		stated := strconv.AppendInt(buf[:0], schemaID, 10)
		contradicted := false
		for _, h := range line.headers {
			if h.name == "rg-schema-id" && (h.value == nil || string(h.value) != string(stated)) {
				contradicted = true
			}
		}
		if contradicted {
			r.altered = true
			c.problems = append(c.problems, r.at("altered"))
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

func (c *checker) position(fields [4][]byte, counts [4]int) (record, bool) {
	for i := range positionHeaders {
		if counts[i] == 0 || fields[i] == nil || !isASCII(fields[i]) {
			return record{}, false
		}
	}
	digest, writer, seq, chain := fields[0], fields[1], fields[2], fields[3]
	if !isHex(writer, 32) || !isSeq(seq) ||
		!bytes.HasPrefix(chain, []byte("sha256:")) || !isHex(chain[7:], 64) ||
		!bytes.HasPrefix(digest, []byte("sha256:")) || !isHex(digest[7:], 64) {
		return record{}, false
	}
	n, ok := parseDigits(seq)
	if !ok {
		return record{}, false
	}
	r := record{writer: c.decoder.intern(writer), seq: n}
	_, _ = hex.Decode(r.digest[:], digest[7:])
	_, _ = hex.Decode(r.chain[:], chain[7:])
	return r, true
}

// chainLink: the chain link of position seq (docs/integrity.md, the chain link).
func chainLink(writer string, seq int64, prev, digest *[32]byte) [32]byte {
	var buf [256]byte
	text := append(buf[:0], "rg-chain-v1\n"...)
	text = append(text, writer...)
	text = append(text, '\n')
	text = strconv.AppendInt(text, seq, 10)
	text = append(text, '\n')
	text = hex.AppendEncode(text, prev[:])
	text = append(text, '\n')
	text = hex.AppendEncode(text, digest[:])
	return sha256.Sum256(text)
}

// linkOf: chainLink in hex, of links and digests in hex.
func linkOf(writer string, seq int64, prev, digest string) string {
	var p, d [32]byte
	_, _ = hex.Decode(p[:], []byte(prev))
	_, _ = hex.Decode(d[:], []byte(digest))
	link := chainLink(writer, seq, &p, &d)
	return hex.EncodeToString(link[:])
}

func (c *checker) positions(set *recordSet, signed trusted) int {
	records := set.list
	valid := 0
	for i := range records {
		r := &records[i]
		first, _ := set.first[r.writer].get(r.seq)
		if first == int32(i) {
			if !r.altered {
				valid++
			}
			continue
		}
		held := &records[first]
		same := held.digest == r.digest && held.chain == r.chain
		if same && !r.altered && !held.altered {
			valid++
			c.problems = append(c.problems, r.at("duplicate"))
		} else if !r.altered {
			c.problems = append(c.problems, r.at("conflict"))
		}
	}
	// In seq order: after a link that does not follow, the next is checked by what comes after
	// it (as verify's walk does), so one break is one finding.
	writers := make([]string, 0, len(set.first))
	for writer := range set.first {
		writers = append(writers, writer)
	}
	slices.Sort(writers)
	order := make([]int32, 0, len(records))
	for _, writer := range writers {
		index := set.first[writer]
		for _, seq := range index.seqs() {
			first, _ := index.get(seq)
			order = append(order, first)
		}
	}
	broken := make([]bool, len(records))
	var zero [32]byte // the genesis link
	for _, i := range order {
		r := &records[i]
		var prev *[32]byte
		if r.seq == 0 {
			prev = &zero
		}
		if before, ok := set.first[r.writer].get(r.seq - 1); ok && !records[before].altered && !broken[before] {
			prev = &records[before].chain
		}
		if prev != nil && chainLink(r.writer, r.seq, prev, &r.digest) != r.chain {
			broken[i] = true
			if !r.altered {
				valid--
			}
			c.problems = append(c.problems, r.at("forged"))
		}
		p := place{r.writer, r.seq}
		if chain, ok := signed.chains[p]; ok {
			var text [64]byte
			hex.Encode(text[:], r.chain[:])
			if chain != string(text[:]) {
				c.problems = append(c.problems, r.at("conflict"))
			}
		}
		if signed.voids[p] {
			c.problems = append(c.problems, r.at("conflict"))
		}
	}
	return valid
}

// -- step 7: the proofs

// proofLines reads proofs.ndjson as it is inflated: the first proof given for a place is
// checked for each record at that place. If the member cannot be read to its end, what its
// lines showed is forgotten.
func (c *checker) proofLines(b *bundle, set *recordSet, signed trusted) {
	var text []byte
	read := b.streamLines(memberProofs, func(number int, raw []byte) {
		writer, seq, escaped, fast := fastProofLine(raw)
		if fast {
			text = unescapeLF(text[:0], escaped)
		} else {
			data, err := object(raw)
			if err != nil || !hasFields(data, "writer", "seq", "proof") {
				c.memberProblem("forged", memberProofs, ptr(int64(number)))
				return
			}
			name, isText := asString(data["writer"])
			proof, isProof := asString(data["proof"])
			n, isInt := asInt(data["seq"])
			if !isText || !isProof || !isInt {
				c.memberProblem("forged", memberProofs, ptr(int64(number)))
				return
			}
			writer, seq, text = []byte(name), n, append(text[:0], proof...)
		}
		first, held := set.first[string(writer)].get(seq)
		if !held || set.proof[first] != noProof {
			return // no record there, or not the first proof given for it
		}
		for i := first; i >= 0; i = set.next[i] {
			set.proof[i] = notProven
			if c.proves(text, &set.list[i], signed) {
				set.proof[i] = proven
			}
		}
	})
	if !read {
		clear(set.proof)
		c.problems = nil
	}
}

func (c *checker) proofFindings(set *recordSet, signed trusted) {
	for i := range set.list {
		r := &set.list[i]
		state := set.proof[i]
		if covered, signed := signed.covers[r.writer]; state == noProof && signed && covered >= r.seq {
			// A signed tree covers it, so a proof could have been given: none is not benign.
			c.problems = append(c.problems, r.at("bad_proof"))
			continue
		}
		if state == noProof {
			f := r.at("not_covered")
			if c.strict {
				c.problems = append(c.problems, f)
			} else {
				c.warnings = append(c.warnings, f)
			}
			continue
		}
		if state == notProven {
			c.problems = append(c.problems, r.at("bad_proof"))
		}
	}
}

// isIndex: what decimal accepts (0, or up to 19 digits without a leading zero).
func isIndex(text []byte) bool {
	return len(text) <= 19 && isSeq(text)
}

// proves: the tlog-proof shows r at its position in a tree a trusted checkpoint of its writer
// signed (the note is one of those checkpoints' notes, so it opens with a trusted key).
func (c *checker) proves(proof []byte, r *record, signed trusted) bool {
	// The head's lines up to the first empty line (the first LF LF): the note follows.
	c.lines = c.lines[:0]
	cut := -1
	for start := 0; cut < 0; {
		end := bytes.IndexByte(proof[start:], '\n')
		if end < 0 {
			return false
		}
		end += start
		if end+1 < len(proof) && proof[end+1] == '\n' {
			cut = end
		}
		c.lines, start = append(c.lines, proof[start:end]), end+1
	}
	head, checkpointNote := proof[:cut], proof[cut+2:]
	if !isASCII(head) {
		return false
	}
	// Most proofs give the note the one before gave: its tree is then known.
	if c.note == nil || c.note.writer != r.writer || c.note.text != string(checkpointNote) {
		if !signed.notes[r.writer][string(checkpointNote)] {
			return false
		}
		tree, ok := signed.heads[string(checkpointNote)]
		if !ok {
			return false
		}
		proven := signed.proven[string(checkpointNote)]
		if proven == nil {
			proven = newProvenTree(tree.size, tree.root)
			signed.proven[string(checkpointNote)] = proven
		}
		c.note = &noteTree{r.writer, string(checkpointNote), proven}
	}
	if string(c.lines[0]) != "c2sp.org/tlog-proof@v1" {
		return false
	}
	rest := c.lines[1:]
	var extra []byte
	hasExtra := false
	if len(rest) > 0 && bytes.HasPrefix(rest[0], []byte("extra ")) {
		var ok bool
		if extra, ok = appendStrictBase64(c.scratch[:0], rest[0][6:]); !ok {
			return false
		}
		c.scratch, hasExtra, rest = extra, true, rest[1:]
	}
	if !hasExtra || len(rest) == 0 || !bytes.HasPrefix(rest[0], []byte("index ")) {
		return false
	}
	indexText := rest[0][6:]
	if !isIndex(indexText) || len(rest)-1 > 63 {
		return false
	}
	index, ok := parseDigits(indexText)
	if !ok {
		return false
	}
	// The leaf entry is exactly this record's at this index.
	want := append(c.want[:0], "rg-leaf-v1\n"...)
	want = append(append(want, r.writer...), '\n')
	want = append(strconv.AppendInt(want, r.seq, 10), '\n')
	want = hex.AppendEncode(want, r.digest[:])
	if r.schemaID >= 0 {
		want = strconv.AppendInt(append(want, '\n'), r.schemaID, 10)
	}
	c.want = want
	if !bytes.Equal(extra, want) || index != r.seq {
		return false
	}
	return c.note.tree.includes(index, leafHash(extra), rest[1:])
}
