// tlogcheck checks this project's Merkle trees, proofs and signed notes with Go's
// golang.org/x/mod/sumdb packages, which this project did not write. It reads one JSON
// request per line on stdin and answers one JSON line per request on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/formats/proof"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	Op      string   `json:"op"`
	Leaves  [][]byte `json:"leaves"`
	Size    int64    `json:"size"`
	Old     int64    `json:"old"`
	Index   int64    `json:"index"`
	Leaf    []byte   `json:"leaf"`
	Root    []byte   `json:"root"`
	OldRoot []byte   `json:"old_root"`
	Proof   [][]byte `json:"proof"`
	Note    []byte   `json:"note"`
	Keys    []string `json:"keys"`
	Origin  string   `json:"origin"`
	Text    string   `json:"text"`
}

type answer struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error,omitempty"`
	Roots  [][]byte `json:"roots,omitempty"`
	Text   string   `json:"text,omitempty"`
	Signed []string `json:"signed,omitempty"`
	Size   uint64   `json:"size,omitempty"`
	Root   []byte   `json:"root,omitempty"`
	Index  uint64   `json:"index,omitempty"`
}

// verifiers reads verifier keys (name+id+key) as note.NewVerifier does.
func verifiers(keys []string) (note.Verifiers, []note.Verifier, error) {
	var all []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, v)
	}
	return note.VerifierList(all...), all, nil
}

// checkpoint opens a signed checkpoint of origin with the first key as the log's key and
// the others as further (e.g. witness) keys, as formats/log does.
func checkpoint(data []byte, origin string, keys []string) (*log.Checkpoint, error) {
	_, all, err := verifiers(keys)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no key")
	}
	cp, _, _, err := log.ParseCheckpoint(data, origin, all[0], all[1:]...)
	return cp, err
}

// leafReader serves stored hashes of a tree built from the request's leaves.
type hashes []tlog.Hash

func (h hashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(h)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = h[x]
	}
	return out, nil
}

func toHash(b []byte) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("a hash is %d bytes, not %d", tlog.HashSize, len(b))
	}
	copy(h[:], b)
	return h, nil
}

func handle(r request) answer {
	switch r.Op {
	case "roots":
		// The root of every prefix 0..len(leaves) of the given entries.
		var stored hashes
		roots := make([][]byte, 0, len(r.Leaves)+1)
		for n := 0; n <= len(r.Leaves); n++ {
			if n > 0 {
				more, err := tlog.StoredHashes(int64(n-1), r.Leaves[n-1], stored)
				if err != nil {
					return answer{Error: err.Error()}
				}
				stored = append(stored, more...)
			}
			root, err := tlog.TreeHash(int64(n), stored)
			if err != nil {
				return answer{Error: err.Error()}
			}
			roots = append(roots, root[:])
		}
		return answer{OK: true, Roots: roots}
	case "inclusion":
		leaf, err := toHash(r.Leaf)
		if err != nil {
			return answer{Error: err.Error()}
		}
		root, err := toHash(r.Root)
		if err != nil {
			return answer{Error: err.Error()}
		}
		proof := make(tlog.RecordProof, len(r.Proof))
		for i, p := range r.Proof {
			if proof[i], err = toHash(p); err != nil {
				return answer{Error: err.Error()}
			}
		}
		if err := tlog.CheckRecord(proof, r.Size, root, r.Index, leaf); err != nil {
			return answer{Error: err.Error()}
		}
		return answer{OK: true}
	case "consistency":
		oldRoot, err := toHash(r.OldRoot)
		if err != nil {
			return answer{Error: err.Error()}
		}
		root, err := toHash(r.Root)
		if err != nil {
			return answer{Error: err.Error()}
		}
		proof := make(tlog.TreeProof, len(r.Proof))
		for i, p := range r.Proof {
			if proof[i], err = toHash(p); err != nil {
				return answer{Error: err.Error()}
			}
		}
		if err := tlog.CheckTree(proof, r.Size, root, r.Old, oldRoot); err != nil {
			return answer{Error: err.Error()}
		}
		return answer{OK: true}
	case "open":
		// A signed note opened with sumdb/note: its text and who signed it.
		list, _, err := verifiers(r.Keys)
		if err != nil {
			return answer{Error: err.Error()}
		}
		n, err := note.Open(r.Note, list)
		if err != nil {
			return answer{Error: err.Error()}
		}
		var signed []string
		for _, s := range n.Sigs {
			signed = append(signed, s.Name)
		}
		return answer{OK: true, Text: n.Text, Signed: signed}
	case "sign":
		// Text signed by sumdb/note with each signer key (PRIVATE+KEY+name+id+key).
		var signers []note.Signer
		for _, k := range r.Keys {
			s, err := note.NewSigner(k)
			if err != nil {
				return answer{Error: err.Error()}
			}
			signers = append(signers, s)
		}
		msg, err := note.Sign(&note.Note{Text: r.Text}, signers...)
		if err != nil {
			return answer{Error: err.Error()}
		}
		return answer{OK: true, Text: string(msg)}
	case "checkpoint":
		cp, err := checkpoint(r.Note, r.Origin, r.Keys)
		if err != nil {
			return answer{Error: err.Error()}
		}
		return answer{OK: true, Size: cp.Size, Root: cp.Hash}
	case "tlogproof":
		// A c2sp.org/tlog-proof read by formats/proof, its checkpoint opened by formats/log,
		// and the leaf's inclusion checked by sumdb/tlog.
		var p proof.TLogProof
		if err := p.Unmarshal(r.Note); err != nil {
			return answer{Error: err.Error()}
		}
		cp, err := checkpoint(p.Checkpoint, r.Origin, r.Keys)
		if err != nil {
			return answer{Error: err.Error()}
		}
		leaf, err := toHash(r.Leaf)
		if err != nil {
			return answer{Error: err.Error()}
		}
		root, err := toHash(cp.Hash)
		if err != nil {
			return answer{Error: err.Error()}
		}
		hashes := make(tlog.RecordProof, len(p.Hashes))
		for i, h := range p.Hashes {
			hashes[i] = tlog.Hash(h)
		}
		if err := tlog.CheckRecord(hashes, int64(cp.Size), root, int64(p.Index), leaf); err != nil {
			return answer{Error: err.Error()}
		}
		return answer{OK: true, Size: cp.Size, Root: cp.Hash, Index: p.Index}
	}
	return answer{Error: "unknown op " + r.Op}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<30)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			_ = out.Encode(answer{Error: "bad request: " + err.Error()})
			continue
		}
		_ = out.Encode(handle(r))
	}
}
