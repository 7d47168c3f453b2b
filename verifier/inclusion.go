package main

// Inclusion proofs (RFC 9162 §2.1.3.2) checked against the nodes already proven in one tree.
// Most proofs of a bundle lead through nodes an earlier proof of the same tree proved; from
// such a node on, a proof is valid exactly when its remaining hashes are the ones that led that
// node to the root (any others would give another root, short of a SHA-256 collision), so they
// are compared with those instead of hashed. The answer is the one a full check gives.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
)

// nodeAt: a node of the tree by the steps of the check that reach it (the shifts of the
// index so far, and the shifted index).
type nodeAt struct {
	shifts int
	fn     int64
}

// provenNode: the hash of a node proven to be in the tree, and how the proof that proved it
// went on: the line it gave next (the node's sibling, as strictly spelt), or that it ended
// there, at the root.
type provenNode struct {
	hash    [32]byte
	sibling [44]byte
	last    bool
}

// recentNode: the node of one level a proof last passed (consecutive proofs share most of
// their way to the root: this spares looking them up).
type recentNode struct {
	at   nodeAt
	node provenNode
	held bool
}

// pending: a node a proof passes through, remembered if the proof holds.
type pending struct {
	at   nodeAt
	node provenNode
}

// provenTree holds the proven nodes of one tree (size and root).
type provenTree struct {
	size   int64
	root   [32]byte
	nodes  map[nodeAt]provenNode
	path   []pending
	recent [64]recentNode
}

// lookup: the proven node at at, if there is one.
func (t *provenTree) lookup(at nodeAt) (provenNode, bool) {
	level := at.shifts & 63
	if cached := &t.recent[level]; cached.held && cached.at == at {
		return cached.node, true
	}
	if at.shifts == 0 {
		return provenNode{}, false // leaves are not kept (remember)
	}
	known, ok := t.nodes[at]
	if ok {
		t.recent[level] = recentNode{at, known, true}
	}
	return known, ok
}

func newProvenTree(size int64, root []byte) *provenTree {
	t := &provenTree{size: size, nodes: map[nodeAt]provenNode{}}
	copy(t.root[:], root)
	return t
}

// proofHash: a line of the proof, one hash in strict base64 (its one spelling).
func proofHash(line []byte) ([32]byte, bool) {
	var out [33]byte
	if len(line) != 44 || bytes.ContainsAny(line, "\r\n") {
		return [32]byte{}, false
	}
	n, err := base64.StdEncoding.Strict().Decode(out[:], line)
	return [32]byte(out[:32]), err == nil && n == 32
}

// up: the next step of RFC 9162's walk, the sibling being on the left or on the right.
func up(fn, sn int64, shifts int) (int64, int64, int, bool) {
	left := fn&1 == 1 || fn == sn
	if left && fn&1 == 0 {
		for fn&1 == 0 && fn != 0 {
			fn, sn, shifts = fn>>1, sn>>1, shifts+1
		}
	}
	return fn >> 1, sn >> 1, shifts + 1, left
}

// includes: lines (base64 hashes, one a line, strictly spelt) prove leaf at index.
func (t *provenTree) includes(index int64, leaf [32]byte, lines [][]byte) bool {
	if index < 0 || index >= t.size {
		return false
	}
	fn, sn, shifts := index, t.size-1, 0
	r := leaf
	t.path = t.path[:0]
	for step := 0; ; step++ {
		at := nodeAt{shifts, fn}
		if known, ok := t.lookup(at); ok {
			if known.hash != r || !t.leadsToRoot(known, fn, sn, shifts, lines[step:]) {
				return false
			}
			t.remember()
			return true
		}
		if step == len(lines) {
			t.path = append(t.path, pending{at, provenNode{hash: r, last: true}})
			break
		}
		if sn == 0 {
			return false
		}
		p, ok := proofHash(lines[step])
		if !ok {
			return false
		}
		t.path = append(t.path, pending{at, provenNode{hash: r, sibling: [44]byte(lines[step])}})
		var left bool
		fn, sn, shifts, left = up(fn, sn, shifts)
		if left {
			r = node(p, r)
		} else {
			r = node(r, p)
		}
	}
	if sn != 0 || r != t.root {
		return false
	}
	t.remember()
	return true
}

// leadsToRoot: from the proven node known (at fn, sn, shifts), lines are exactly the hashes
// that led it to the root.
func (t *provenTree) leadsToRoot(known provenNode, fn, sn int64, shifts int, lines [][]byte) bool {
	for _, line := range lines {
		if known.last {
			return false
		}
		// The same text as a line proofHash took: strictly spelt too.
		if string(line) != string(known.sibling[:]) {
			return false
		}
		fn, sn, shifts, _ = up(fn, sn, shifts)
		var held bool
		if known, held = t.lookup(nodeAt{shifts, fn}); !held {
			return false // never: the proof that proved a node proved those above it too
		}
	}
	return known.last
}

// remember: the nodes a valid proof passed through are proven.
func (t *provenTree) remember() {
	for _, p := range t.path {
		if p.at.shifts == 0 {
			// A leaf is proven again only for a record held twice: not worth the memory.
			t.recent[0] = recentNode{p.at, p.node, true}
			continue
		}
		t.nodes[p.at] = p.node
		t.recent[p.at.shifts&63] = recentNode{p.at, p.node, true}
	}
}

func node(left, right [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}
