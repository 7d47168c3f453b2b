package main

// A fast path for the lines export writes: canonical JSON, UTF-8, strings without escapes
// (a proof's LFs as \n). A line it does not recognise is read by the general path, so the
// answer never depends on which path read it; only the speed does. It reads into memory it
// reuses: what it returns is valid until the next line.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// cursor walks a line; ok turns false at the first surprise.
type cursor struct {
	data []byte
	at   int
	ok   bool
}

func (c *cursor) lit(text string) {
	if c.ok && len(c.data)-c.at >= len(text) && string(c.data[c.at:c.at+len(text)]) == text {
		c.at += len(text)
	} else {
		c.ok = false
	}
}

func (c *cursor) peek(b byte) bool {
	return c.ok && c.at < len(c.data) && c.data[c.at] == b
}

// hasControl: a byte below 0x20 in span, eight bytes at a time (a byte of 0x80 or more never
// counts: its high bit is clear in ^x).
func hasControl(span []byte) bool {
	const highs, below = 0x8080808080808080, 0x20 * 0x0101010101010101
	for len(span) >= 8 {
		x := binary.LittleEndian.Uint64(span)
		if (x-below)&^x&highs != 0 {
			return true
		}
		span = span[8:]
	}
	for _, b := range span {
		if b < 0x20 {
			return true
		}
	}
	return false
}

// str reads a string without escapes (with escapedLF, \n is allowed and kept escaped: the
// caller unescapes it).
func (c *cursor) str(escapedLF bool) []byte {
	c.lit(`"`)
	if !c.ok {
		return nil
	}
	end := bytes.IndexByte(c.data[c.at:], '"')
	if end < 0 {
		c.ok = false
		return nil
	}
	span := c.data[c.at : c.at+end]
	if hasControl(span) {
		c.ok = false
		return nil
	}
	for rest := span; ; {
		slash := bytes.IndexByte(rest, '\\')
		if slash < 0 {
			break
		}
		// Only \n, and only where allowed; a \" ends the span at its quote: refused here too.
		if !escapedLF || slash+1 >= len(rest) || rest[slash+1] != 'n' {
			c.ok = false
			return nil
		}
		rest = rest[slash+2:]
	}
	c.at += end + 1
	return span
}

func (c *cursor) integer() int64 {
	if !c.ok {
		return 0
	}
	start := c.at
	if c.peek('-') {
		c.at++
	}
	digits := c.at
	for c.at < len(c.data) && c.data[c.at] >= '0' && c.data[c.at] <= '9' {
		c.at++
	}
	if c.at == digits || (c.data[digits] == '0' && c.at-digits > 1) {
		c.ok = false
		return 0
	}
	if c.at-digits <= 18 { // no overflow: add the digits up
		var n int64
		for _, d := range c.data[digits:c.at] {
			n = n*10 + int64(d-'0')
		}
		if digits > start {
			n = -n
		}
		return n
	}
	n, err := strconv.ParseInt(string(c.data[start:c.at]), 10, 64)
	if err != nil {
		c.ok = false
	}
	return n
}

// lineDecoder reads lines into memory it reuses.
type lineDecoder struct {
	arena   []byte   // the decoded base64 of the line
	headers []header // the line's headers
	names   map[string]string
}

func newLineDecoder() *lineDecoder {
	return &lineDecoder{arena: make([]byte, 0, 1<<14), names: map[string]string{}}
}

// intern: one string for each topic or header name seen (a bounded number of them).
func (d *lineDecoder) intern(text []byte) string {
	if known, ok := d.names[string(text)]; ok {
		return known
	}
	kept := string(text)
	if len(d.names) < 1<<12 {
		d.names[kept] = kept
	}
	return kept
}

// b64 reads null or a base64 string (padded standard alphabet, as Python's validating decoder).
func (d *lineDecoder) b64(c *cursor) []byte {
	if c.ok && len(c.data)-c.at >= 4 && string(c.data[c.at:c.at+4]) == "null" {
		c.at += 4
		return nil
	}
	text := c.str(false)
	if !c.ok {
		return nil
	}
	start := len(d.arena)
	var err error
	// Earlier values stay valid if the arena grows: they keep the array they were decoded in.
	d.arena, err = base64.StdEncoding.AppendDecode(d.arena, text)
	if err != nil {
		c.ok = false
		return nil
	}
	return d.arena[start:len(d.arena):len(d.arena)]
}

// decode reads a record line; false when it is not of the form.
func (d *lineDecoder) decode(raw []byte) (kafkaLine, bool) {
	if line, ok := d.fast(raw); ok {
		return line, true
	}
	return generalLine(raw)
}

// fast reads a canonical record line; false: use the general path.
func (d *lineDecoder) fast(raw []byte) (kafkaLine, bool) {
	c := &cursor{data: raw, ok: utf8.Valid(raw)}
	d.arena, d.headers = d.arena[:0], d.headers[:0]
	var line kafkaLine
	c.lit(`{"headers":[`)
	for c.ok && !c.peek(']') {
		if len(d.headers) > 0 {
			c.lit(",")
		}
		c.lit("[")
		name := c.str(false)
		c.lit(",")
		value := d.b64(c)
		c.lit("]")
		if c.ok {
			d.headers = append(d.headers, header{d.intern(name), value})
		}
	}
	line.headers = d.headers
	c.lit(`],"key":`)
	line.key = d.b64(c)
	c.lit(`,"offset":`)
	line.offset = c.integer()
	c.lit(`,"partition":`)
	line.partition = c.integer()
	c.lit(`,"timestamp":`)
	c.integer()
	c.lit(`,"topic":`)
	if topic := c.str(false); c.ok {
		line.topic = d.intern(topic)
	}
	c.lit(`,"value":`)
	line.value = d.b64(c)
	c.lit("}")
	return line, c.ok && c.at == len(raw)
}

// fastLine reads a canonical record line into memory of its own; false: use the general path.
func fastLine(raw []byte) (kafkaLine, bool) {
	return newLineDecoder().fast(raw)
}

// decodeLine reads a record line into memory of its own; false when it is not of the form.
func decodeLine(raw []byte) (kafkaLine, bool) {
	return newLineDecoder().decode(raw)
}

// fastProofLine reads a canonical proofs.ndjson line: the writer, the seq and the proof as
// written (its LFs as \n: unescapeLF gives the text); false: use the general path.
func fastProofLine(raw []byte) ([]byte, int64, []byte, bool) {
	c := &cursor{data: raw, ok: utf8.Valid(raw)}
	c.lit(`{"proof":`)
	proof := c.str(true)
	c.lit(`,"seq":`)
	seq := c.integer()
	c.lit(`,"writer":`)
	writer := c.str(false)
	c.lit("}")
	if !c.ok || c.at != len(raw) {
		return nil, 0, nil, false
	}
	return writer, seq, proof, true
}

// unescapeLF appends escaped with each \n an LF to out.
func unescapeLF(out, escaped []byte) []byte {
	for {
		slash := bytes.IndexByte(escaped, '\\')
		if slash < 0 {
			return append(out, escaped...)
		}
		out = append(append(out, escaped[:slash]...), '\n')
		escaped = escaped[slash+2:]
	}
}
