package main

// C2SP signed notes and tlog-checkpoint bodies, read strictly (one spelling for every value),
// and opened with golang.org/x/mod/sumdb/note.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

const (
	dash          = "\u2014 "
	maxNoteBytes  = 1 << 20
	maxSignatures = 100
)

var (
	errNote  = errors.New("not a signed note of the form")
	decimal  = regexp.MustCompile(`^(0|[1-9][0-9]{0,18})$`)
	hex64    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	writerID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// signatureLine is one signature line of a note: the key name, its 4-byte id, the signature.
type signatureLine struct {
	name string
	id   []byte
	sig  []byte
}

// parsedNote is a note's text and its signature lines (not verified).
type parsedNote struct {
	text       string
	signatures []signatureLine
}

// treeHead is a tlog-checkpoint body.
type treeHead struct {
	origin     string
	size       int64
	root       []byte
	extensions int
}

// strictBase64: standard base64 with padding that re-encodes to itself.
func strictBase64(text string) ([]byte, bool) {
	// The strict decoder wants the padding and zero unused bits; it skips CR and LF only,
	// so without those the text is the one spelling of its bytes.
	if strings.ContainsAny(text, "\r\n") {
		return nil, false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(text)
	if err != nil {
		return nil, false
	}
	return raw, true
}

// appendStrictBase64: strictBase64 of text, appended to out.
func appendStrictBase64(out, text []byte) ([]byte, bool) {
	if bytes.ContainsAny(text, "\r\n") {
		return out, false
	}
	out, err := base64.StdEncoding.Strict().AppendDecode(out, text)
	return out, err == nil
}

func checkText(text string) bool {
	if !strings.HasSuffix(text, "\n") || strings.Contains(text, "\n\n") || strings.HasPrefix(text, "\n") {
		return false
	}
	for _, c := range text {
		if c < 0x20 && c != '\n' {
			return false
		}
	}
	return true
}

// validName: non-empty, no '+', no white space (as Python's str.isspace counts it).
func validName(name string) bool {
	if name == "" || strings.Contains(name, "+") {
		return false
	}
	for _, c := range name {
		if unicode.IsSpace(c) || (c >= 0x1c && c <= 0x1f) {
			return false
		}
	}
	return true
}

func parseNote(data []byte) (parsedNote, error) {
	if len(data) > maxNoteBytes || !utf8.Valid(data) {
		return parsedNote{}, errNote
	}
	whole := string(data)
	cut := strings.LastIndex(whole, "\n\n")
	if cut < 0 || !strings.HasSuffix(whole, "\n") {
		return parsedNote{}, errNote
	}
	text := whole[:cut+1]
	rest := ""
	if cut+2 <= len(whole)-1 {
		rest = whole[cut+2 : len(whole)-1]
	}
	if !checkText(text) {
		return parsedNote{}, errNote
	}
	lines := strings.Split(rest, "\n")
	if len(lines) > maxSignatures {
		return parsedNote{}, errNote
	}
	found := parsedNote{text: text}
	for _, line := range lines {
		if !strings.HasPrefix(line, dash) || strings.Count(line, " ") != 2 {
			return parsedNote{}, errNote
		}
		name, encoded, _ := strings.Cut(line[len(dash):], " ")
		raw, ok := strictBase64(encoded)
		if !ok || len(raw) < 5 || !validName(name) {
			return parsedNote{}, errNote
		}
		found.signatures = append(found.signatures, signatureLine{name, raw[:4], raw[4:]})
	}
	return found, nil
}

func parseTreeHead(text string) (treeHead, error) {
	if !checkText(text) {
		return treeHead{}, errNote
	}
	lines := strings.Split(text[:len(text)-1], "\n")
	if len(lines) < 3 || lines[0] == "" || !decimal.MatchString(lines[1]) {
		return treeHead{}, errNote
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return treeHead{}, errNote
	}
	root, ok := strictBase64(lines[2])
	if !ok || len(root) != 32 {
		return treeHead{}, errNote
	}
	return treeHead{lines[0], size, root, len(lines) - 3}, nil
}

// opens: the note verifies with key under the key name name (sumdb/note: signatures by other
// keys are ignored, a known key's bad signature fails the note).
func opens(data []byte, name string, key ed25519.PublicKey) bool {
	vkey, err := note.NewEd25519VerifierKey(name, key)
	if err != nil {
		return false
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return false
	}
	_, err = note.Open(data, note.VerifierList(verifier))
	return err == nil
}
