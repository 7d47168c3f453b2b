package main

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// path: the RFC 6962 inclusion path of leaf m in leaves.
func path(m int, leaves [][32]byte) [][32]byte {
	if len(leaves) <= 1 {
		return nil
	}
	split := 1
	for split*2 < len(leaves) {
		split *= 2
	}
	if m < split {
		return append(path(m, leaves[:split]), treeRoot(leaves[split:]))
	}
	return append(path(m-split, leaves[split:]), treeRoot(leaves[:split]))
}

func texts(hashes [][32]byte) [][]byte {
	out := make([][]byte, len(hashes))
	for i, h := range hashes {
		out[i] = []byte(base64.StdEncoding.EncodeToString(h[:]))
	}
	return out
}

// The proven-node shortcut answers as sumdb/tlog's full check, on valid proofs and on every
// kind of damage, in any order of checking.
func TestInclusionAgreesWithTlog(t *testing.T) {
	for size := 1; size <= 40; size++ {
		leaves := make([][32]byte, size)
		for i := range leaves {
			leaves[i] = leafHash([]byte("leaf " + strconv.Itoa(i)))
		}
		root := treeRoot(leaves)
		proven := newProvenTree(int64(size), root[:])
		for pass := range 2 {
			for k := range size {
				index := k
				if pass == 1 {
					index = size - 1 - k
				}
				good := path(index, leaves)
				cases := [][][32]byte{good}
				if len(good) > 0 {
					flipped := append([][32]byte{}, good...)
					flipped[len(good)-1][0] ^= 1
					cases = append(cases, flipped, good[:len(good)-1])
				}
				cases = append(cases, append(append([][32]byte{}, good...), sha256.Sum256(nil)))
				for c, hashes := range cases {
					want := tlog.CheckRecord(toTlog(hashes), int64(size), tlog.Hash(root), int64(index), tlog.Hash(leaves[index])) == nil
					if got := proven.includes(int64(index), leaves[index], texts(hashes)); got != want {
						t.Fatalf("size %d index %d case %d: %v, tlog says %v", size, index, c, got, want)
					}
				}
				// Another leaf's hash at this index, and a non-canonical spelling.
				other := leafHash([]byte("other"))
				if proven.includes(int64(index), other, texts(good)) {
					t.Fatalf("size %d index %d: another leaf proven", size, index)
				}
				if spelt := texts(good); len(spelt) > 0 {
					spelt[0] = append(spelt[0][:43:43], 'B')
					if proven.includes(int64(index), leaves[index], spelt) {
						t.Fatalf("size %d index %d: a hash spelt otherwise proven", size, index)
					}
				}
			}
		}
		if proven.includes(int64(size), leaves[0], nil) {
			t.Fatalf("size %d: an index beyond the tree proven", size)
		}
	}
}

func toTlog(hashes [][32]byte) tlog.RecordProof {
	out := make(tlog.RecordProof, len(hashes))
	for i, h := range hashes {
		out[i] = tlog.Hash(h)
	}
	return out
}
