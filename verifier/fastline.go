package main

// A fast path for the lines export writes: canonical JSON, UTF-8, strings without escapes
// (a proof's LFs as \n). A line it does not recognise is read by the general path, so the
// answer never depends on which path read it; only the speed does.

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// cursor walks a line byte by byte; ok turns false at the first surprise.
type cursor struct {
	data []byte
	at   int
	ok   bool
}

func (c *cursor) lit(text string) {
	if c.ok && bytes.HasPrefix(c.data[c.at:], []byte(text)) {
		c.at += len(text)
	} else {
		c.ok = false
	}
}

func (c *cursor) peek(b byte) bool {
	return c.ok && c.at < len(c.data) && c.data[c.at] == b
}

// str reads a string without escapes (with unescapeLF, \n is allowed and kept escaped: the
// caller unescapes it).
func (c *cursor) str(unescapeLF bool) []byte {
	c.lit(`"`)
	if !c.ok {
		return nil
	}
	start := c.at
	for c.at < len(c.data) {
		b := c.data[c.at]
		switch {
		case b == '"':
			c.at++
			return c.data[start : c.at-1]
		case b == '\\':
			if !unescapeLF || c.at+1 >= len(c.data) || c.data[c.at+1] != 'n' {
				c.ok = false
				return nil
			}
			c.at += 2
		case b < 0x20:
			c.ok = false
			return nil
		default:
			c.at++
		}
	}
	c.ok = false
	return nil
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
	n, err := strconv.ParseInt(string(c.data[start:c.at]), 10, 64)
	if err != nil {
		c.ok = false
	}
	return n
}

// b64 reads null or a base64 string (padded standard alphabet, as Python's validating decoder).
func (c *cursor) b64() []byte {
	if c.ok && bytes.HasPrefix(c.data[c.at:], []byte("null")) {
		c.at += 4
		return nil
	}
	text := c.str(false)
	if !c.ok {
		return nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(out, text)
	if err != nil {
		c.ok = false
		return nil
	}
	return out[:n]
}

// fastLine reads a canonical record line; false: use the general path.
func fastLine(raw []byte) (kafkaLine, bool) {
	c := &cursor{data: raw, ok: utf8.Valid(raw)}
	var line kafkaLine
	c.lit(`{"headers":[`)
	for c.ok && !c.peek(']') {
		if len(line.headers) > 0 {
			c.lit(",")
		}
		c.lit("[")
		name := c.str(false)
		c.lit(",")
		value := c.b64()
		c.lit("]")
		line.headers = append(line.headers, header{string(name), value})
	}
	c.lit(`],"key":`)
	line.key = c.b64()
	c.lit(`,"offset":`)
	line.offset = c.integer()
	c.lit(`,"partition":`)
	line.partition = c.integer()
	c.lit(`,"timestamp":`)
	c.integer()
	c.lit(`,"topic":`)
	line.topic = string(c.str(false))
	c.lit(`,"value":`)
	line.value = c.b64()
	c.lit("}")
	return line, c.ok && c.at == len(raw)
}

// fastProofLine reads a canonical proofs.ndjson line; false: use the general path.
func fastProofLine(raw []byte) (string, int64, string, bool) {
	c := &cursor{data: raw, ok: utf8.Valid(raw)}
	c.lit(`{"proof":`)
	proof := c.str(true)
	c.lit(`,"seq":`)
	seq := c.integer()
	c.lit(`,"writer":`)
	writer := c.str(false)
	c.lit("}")
	if !c.ok || c.at != len(raw) {
		return "", 0, "", false
	}
	return string(writer), seq, string(bytes.ReplaceAll(proof, []byte(`\n`), []byte("\n"))), true
}
