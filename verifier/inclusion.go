package main

// Inclusion proofs (RFC 9162 §2.1.3.2) checked against the nodes already proven in one tree.
// Most proofs of a bundle lead through nodes an earlier proof of the same tree proved; from
// such a node on, a proof is valid exactly when its remaining hashes are the ones that led that
// node to the root (any others would give another root, short of a SHA-256 collision), so they
// are compared as text instead of hashed. The answer is the one a full check gives.

import (
	"crypto/sha256"
)

// nodeAt: a node of the tree by the steps of the check that reach it (the shifts of the
// index so far, and the shifted index).
type nodeAt struct {
	shifts int
	fn     int64
}

// provenNode: the hash of a node proven to be in the tree, and the proof lines that lead it
// to the root.
type provenNode struct {
	hash [32]byte
	rest []string
}

// provenTree holds the proven nodes of one tree (size and root).
type provenTree struct {
	size  int64
	root  [32]byte
	nodes map[nodeAt]provenNode
}

func newProvenTree(size int64, root []byte) *provenTree {
	t := &provenTree{size: size, nodes: map[nodeAt]provenNode{}}
	copy(t.root[:], root)
	return t
}

func sameLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// includes: lines (base64 hashes, one a line, strictly spelt) prove leaf at index.
func (t *provenTree) includes(index int64, leaf [32]byte, lines []string) bool {
	if index < 0 || index >= t.size {
		return false
	}
	fn, sn, shifts := index, t.size-1, 0
	r := leaf
	var path []nodeAt
	var hashes [][32]byte
	for step := 0; ; step++ {
		at := nodeAt{shifts, fn}
		if known, ok := t.nodes[at]; ok {
			if known.hash != r || !sameLines(known.rest, lines[step:]) {
				return false
			}
			t.remember(path, hashes, lines)
			return true
		}
		path, hashes = append(path, at), append(hashes, r)
		if step == len(lines) {
			break
		}
		if sn == 0 {
			return false
		}
		raw, ok := strictBase64(lines[step])
		if !ok || len(raw) != 32 {
			return false
		}
		var p [32]byte
		copy(p[:], raw)
		if fn&1 == 1 || fn == sn {
			r = node(p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn, sn, shifts = fn>>1, sn>>1, shifts+1
				}
			}
		} else {
			r = node(r, p)
		}
		fn, sn, shifts = fn>>1, sn>>1, shifts+1
	}
	if sn != 0 || r != t.root {
		return false
	}
	t.remember(path, hashes, lines)
	return true
}

// remember: the nodes a valid proof passed through are proven.
func (t *provenTree) remember(path []nodeAt, hashes [][32]byte, lines []string) {
	for i, at := range path {
		t.nodes[at] = provenNode{hashes[i], lines[i:]}
	}
}

func node(left, right [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}
