package main

// The records of a bundle by place (writer, seq): the first record at each place, in an array
// by seq when a writer's seqs are dense (as an export's are), in a map when they are not.

import (
	"slices"
)

// seqIndex: the first record at each seq of one writer.
type seqIndex struct {
	base   int64
	dense  []int32 // by seq-base; -1: none
	sparse map[int64]int32
}

func (s *seqIndex) get(seq int64) (int32, bool) {
	if s == nil {
		return 0, false
	}
	if s.dense != nil {
		if seq < s.base || seq-s.base >= int64(len(s.dense)) {
			return 0, false
		}
		i := s.dense[seq-s.base]
		return i, i >= 0
	}
	i, ok := s.sparse[seq]
	return i, ok
}

// seqs: the seqs held, in order.
func (s *seqIndex) seqs() []int64 {
	var held []int64
	if s.dense != nil {
		for offset, i := range s.dense {
			if i >= 0 {
				held = append(held, s.base+int64(offset))
			}
		}
		return held
	}
	for seq := range s.sparse {
		held = append(held, seq)
	}
	slices.Sort(held)
	return held
}

// indexPlaces: each writer's seqIndex over records, and for each record the next one at its
// place (-1: none).
func indexPlaces(records []record) (map[string]*seqIndex, []int32) {
	byWriter := map[string][]int32{}
	for i := range records {
		byWriter[records[i].writer] = append(byWriter[records[i].writer], int32(i))
	}
	next := make([]int32, len(records))
	index := make(map[string]*seqIndex, len(byWriter))
	for writer, held := range byWriter {
		low, high := records[held[0]].seq, records[held[0]].seq
		for _, i := range held {
			low, high = min(low, records[i].seq), max(high, records[i].seq)
		}
		s := &seqIndex{base: low}
		if uint64(high-low) < uint64(2*len(held)+64) {
			s.dense = slices.Repeat([]int32{-1}, int(high-low)+1)
		} else {
			s.sparse = make(map[int64]int32, len(held))
		}
		last := map[int64]int32{} // the last record at a place held twice
		for _, i := range held {
			next[i] = -1
			seq := records[i].seq
			first, seen := s.get(seq)
			if !seen {
				if s.dense != nil {
					s.dense[seq-low] = i
				} else {
					s.sparse[seq] = i
				}
				continue
			}
			if before, chained := last[seq]; chained {
				first = before
			}
			next[first], last[seq] = i, i
		}
		index[writer] = s
	}
	return index, next
}
