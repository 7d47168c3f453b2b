// tlogcheck checks this project's Merkle trees, proofs and signed notes with Go's
// golang.org/x/mod/sumdb packages, which this project did not write. It reads one JSON
// request per line on stdin and answers one JSON line per request on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	Op       string   `json:"op"`
	Leaves   [][]byte `json:"leaves"`
	Size     int64    `json:"size"`
	Old      int64    `json:"old"`
	Index    int64    `json:"index"`
	Leaf     []byte   `json:"leaf"`
	Root     []byte   `json:"root"`
	OldRoot  []byte   `json:"old_root"`
	Proof    [][]byte `json:"proof"`
}

type answer struct {
	OK    bool     `json:"ok"`
	Error string   `json:"error,omitempty"`
	Roots [][]byte `json:"roots,omitempty"`
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
