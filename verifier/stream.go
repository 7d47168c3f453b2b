package main

// The members that hold a line per record, read as a stream while they are inflated: their
// bytes are hashed for the manifest as they pass, and no line is kept once it is handled.

import (
	"bufio"
	"crypto/sha256"
	"hash"
	"io"
)

// summing hashes and counts what is written to it.
type summing struct {
	hash hash.Hash
	size int64
}

func (s *summing) Write(p []byte) (int, error) {
	s.hash.Write(p)
	s.size += int64(len(p))
	return len(p), nil
}

// streamLines calls each with every line of member name, without its LF and numbered from 0
// (the line is valid only during the call), and keeps the member's sum. It returns false when
// the member is not in the archive, or could not be read to its end: then it is unreadable
// and the caller forgets what the lines told it.
func (b *bundle) streamLines(name string, each func(number int, line []byte)) bool {
	file, present := b.files[name]
	if !present {
		return false
	}
	sum, ok := streamMember(file.Open, each)
	if !ok {
		b.unreadable[name] = true
		return false
	}
	b.sums[name] = sum
	return true
}

func streamMember(open func() (io.ReadCloser, error), each func(int, []byte)) (memberSum, bool) {
	var sum memberSum
	member, err := open()
	if err != nil {
		return sum, false
	}
	defer func() { _ = member.Close() }()
	hashed := &summing{hash: sha256.New()}
	reader := bufio.NewReaderSize(io.TeeReader(member, hashed), 1<<20)
	var long []byte // a line longer than the buffer, gathered
	for number := 0; ; {
		chunk, err := reader.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, chunk...)
			continue
		}
		if len(long) > 0 {
			long = append(long, chunk...)
			chunk = long
		}
		switch err {
		case nil:
			each(number, chunk[:len(chunk)-1])
			number++
		case io.EOF:
			if len(chunk) > 0 {
				each(number, chunk)
			}
			hashed.hash.Sum(sum.sha256[:0])
			sum.size = hashed.size
			return sum, true
		default:
			return sum, false
		}
		long = long[:0]
	}
}

// windowReader reads a file through a window of 1 MiB: the members are read front to back, in
// the small reads of the inflater, so most are answered from memory, not by the kernel.
type windowReader struct {
	file   io.ReaderAt
	window []byte
	at     int64 // the file offset of window[0]
}

func newWindowReader(file io.ReaderAt) *windowReader {
	return &windowReader{file: file, at: -1}
}

func (w *windowReader) ReadAt(p []byte, off int64) (int, error) {
	if w.at < 0 || off < w.at || off+int64(len(p)) > w.at+int64(len(w.window)) {
		if len(p) >= 1<<20 {
			return w.file.ReadAt(p, off)
		}
		if w.window == nil {
			w.window = make([]byte, 1<<20)
		}
		n, err := w.file.ReadAt(w.window[:cap(w.window)], off)
		if err != nil && err != io.EOF {
			w.at = -1
			return 0, err
		}
		w.window, w.at = w.window[:n], off
	}
	n := copy(p, w.window[off-w.at:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
