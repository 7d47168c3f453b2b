package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
)

// A streamed member gives the lines ndjsonLines gives of it whole (empty lines, no final LF,
// lines longer than the reader's buffer), and its SHA-256 and size.
func TestStreamedLinesAreTheWholeMembersLines(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	for _, member := range []string{"", "a", "a\n", "a\n\nb", "\n", "a\nb\n", long + "\nb\n" + long, "c\n" + long + "\n"} {
		var got [][]byte
		sum, ok := streamMember(func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(member)), nil
		}, func(number int, line []byte) {
			if number != len(got) {
				t.Fatalf("line %d numbered %d", len(got), number)
			}
			got = append(got, bytes.Clone(line))
		})
		want := ndjsonLines([]byte(member))
		if !ok || len(got) != len(want) || sum.size != int64(len(member)) || sum.sha256 != sha256.Sum256([]byte(member)) {
			t.Fatalf("%.20q: %d lines, %d wanted; size %d", member, len(got), len(want), sum.size)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%.20q: line %d differs", member, i)
			}
		}
	}
}

type failing struct{ left int }

func (f *failing) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, errors.New("zip: checksum error")
	}
	n := min(len(p), f.left)
	for i := range n {
		p[i] = '\n'
	}
	f.left -= n
	return n, nil
}

// A member that cannot be read to its end is not read: the caller is told so.
func TestAMemberThatFailsAtItsEndIsUnreadable(t *testing.T) {
	lines := 0
	_, ok := streamMember(func() (io.ReadCloser, error) {
		return io.NopCloser(&failing{left: 10}), nil
	}, func(int, []byte) { lines++ })
	if ok || lines != 10 {
		t.Fatalf("ok %v after %d lines", ok, lines)
	}
}

// The window answers every read as the file does: bytes, counts and io.EOF at the end.
func TestTheWindowReadsAsTheFile(t *testing.T) {
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	file := bytes.NewReader(data)
	window := newWindowReader(file)
	for _, read := range [][2]int{{0, 10}, {5, 4096}, {1 << 20, 100}, {3 << 20, 100}, {len(data) - 3, 3}, {len(data), 1}, {2, 2 << 20}, {100, 50}} {
		off, size := int64(read[0]), read[1]
		want, got := make([]byte, size), make([]byte, size)
		wantN, wantErr := file.ReadAt(want, off)
		gotN, gotErr := window.ReadAt(got, off)
		if gotN != wantN || (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got[:gotN], want[:wantN]) {
			t.Fatalf("at %d, %d bytes: %d %v, the file %d %v", off, size, gotN, gotErr, wantN, wantErr)
		}
	}
}
