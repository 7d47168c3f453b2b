// cosigcheck opens this project's cosigned checkpoints with transparency-dev/formats (its
// log.ParseCheckpoint and its verifiers of c2sp.org/tlog-cosignature keys) and
// golang.org/x/mod/sumdb/note, which this project did not write. It reads one JSON request per
// line on stdin, {"note": <base64>, "origin": ..., "log_key": <vkey>, "witness_keys": [<vkey>]},
// and answers one JSON line: the checkpoint's size and root and the names of the witnesses
// whose cosignatures verified.
package main

import (
	"bufio"
	"encoding/json"
	"os"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

type request struct {
	Note        []byte   `json:"note"`
	Origin      string   `json:"origin"`
	LogKey      string   `json:"log_key"`
	WitnessKeys []string `json:"witness_keys"`
}

type answer struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Size    uint64   `json:"size,omitempty"`
	Root    []byte   `json:"root,omitempty"`
	Cosigns []string `json:"cosigned_by,omitempty"`
}

func handle(r request) answer {
	logVerifier, err := note.NewVerifier(r.LogKey)
	if err != nil {
		return answer{Error: err.Error()}
	}
	var witnesses []note.Verifier
	for _, k := range r.WitnessKeys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return answer{Error: err.Error()}
		}
		witnesses = append(witnesses, v)
	}
	cp, _, n, err := log.ParseCheckpoint(r.Note, r.Origin, logVerifier, witnesses...)
	if err != nil {
		return answer{Error: err.Error()}
	}
	var cosigned []string
	for _, s := range n.Sigs {
		if s.Name != logVerifier.Name() || s.Hash != logVerifier.KeyHash() {
			cosigned = append(cosigned, s.Name)
		}
	}
	return answer{OK: true, Size: cp.Size, Root: cp.Hash, Cosigns: cosigned}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
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
