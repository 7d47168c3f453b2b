package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// vectors: the JSON blocks of docs/integrity.md that a named test of the project checks too.
func vectors(t *testing.T, checkedBy string) [][]byte {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "integrity.md"))
	if err != nil {
		t.Fatal(err)
	}
	pattern := regexp.MustCompile("(?s)<!-- checked by " + regexp.QuoteMeta(checkedBy) + " -->\n```json\n(.*?)\n```")
	var blocks [][]byte
	for _, found := range pattern.FindAllSubmatch(doc, -1) {
		blocks = append(blocks, found[1])
	}
	if len(blocks) == 0 {
		t.Fatalf("no vector checked by %s in docs/integrity.md", checkedBy)
	}
	return blocks
}

func TestChainLinksOfTheDocsVectors(t *testing.T) {
	var vector struct {
		Writer  string `json:"rg-writer"`
		Records []struct {
			Seq    string `json:"rg-seq"`
			Value  string `json:"value"`
			Digest string `json:"rg-digest"`
			Chain  string `json:"rg-chain"`
		} `json:"records"`
	}
	if err := json.Unmarshal(vectors(t, "tests/integrity/test_chain.py")[0], &vector); err != nil {
		t.Fatal(err)
	}
	prev := genesis
	for i, r := range vector.Records {
		sum := sha256.Sum256([]byte(r.Value))
		digest := hex.EncodeToString(sum[:])
		if "sha256:"+digest != r.Digest {
			t.Fatalf("record %d: digest %s, the doc says %s", i, digest, r.Digest)
		}
		prev = linkOf(vector.Writer, int64(i), prev, digest)
		if "sha256:"+prev != r.Chain {
			t.Fatalf("record %d: link %s, the doc says %s", i, prev, r.Chain)
		}
	}
}

type checkpointVector struct {
	PublicKey    string `json:"public_key"`
	PublicKeyRaw string `json:"public_key_raw_hex"`
	KeyID        string `json:"key_id"`
	Leaves       []struct {
		Entry    string `json:"entry"`
		LeafHash string `json:"leaf_hash"`
	} `json:"leaves"`
	Checkpoints []struct {
		Tree        string `json:"tree"`
		SignedBytes string `json:"signed_bytes"`
		RecordValue string `json:"record_value"`
	} `json:"checkpoints"`
}

func TestCheckpointsOfTheDocsVectorsAreTrusted(t *testing.T) {
	blocks := vectors(t, "tests/integrity/test_checkpoint.py")
	trees := 0
	for _, block := range blocks {
		var vector checkpointVector
		if err := json.Unmarshal(block, &vector); err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(vector.PublicKey + vector.PublicKeyRaw)
		keys := map[string]trustedKey{vector.KeyID: {key: ed25519.PublicKey(raw)}}
		if derivedKeyID(raw) != vector.KeyID {
			t.Fatalf("key id %s, the doc says %s", derivedKeyID(raw), vector.KeyID)
		}
		checks := newTrust(keys)
		for i, c := range vector.Checkpoints {
			parsed, ok := parseCheckpoint([]byte(c.RecordValue))
			if !ok {
				t.Fatalf("checkpoint %d does not parse", i)
			}
			if string(parsed.signedBytes()) != c.SignedBytes {
				t.Fatalf("checkpoint %d: signed bytes\n%s\nthe doc says\n%s", i, parsed.signedBytes(), c.SignedBytes)
			}
			if kind := checks.check(parsed); kind != "" {
				t.Fatalf("checkpoint %d: %s", i, kind)
			}
			// Another time under the same signature: not what was signed.
			moved := strings.Replace(c.RecordValue, "12:00:04", "12:00:05", 1)
			other, ok := parseCheckpoint([]byte(moved))
			if !ok || newTrust(keys).check(other) != "bad_signature" {
				t.Fatalf("checkpoint %d: a changed time is trusted", i)
			}
			if c.Tree != "" {
				trees++
				var leaves [][32]byte
				for _, leaf := range vector.Leaves[:parsed.seq+1] {
					hash := leafHash([]byte(leaf.Entry))
					if hex.EncodeToString(hash[:]) != leaf.LeafHash {
						t.Fatalf("leaf hash %x, the doc says %s", hash, leaf.LeafHash)
					}
					leaves = append(leaves, hash)
				}
				if root := treeRoot(leaves); hex.EncodeToString(root[:]) != c.Tree {
					t.Fatalf("checkpoint %d: root %x, the doc says %s", i, root, c.Tree)
				}
			}
		}
	}
	if trees == 0 {
		t.Fatal("no version 2 checkpoint among the vectors")
	}
}

func TestCheckpointsNotOfTheFormAreRefused(t *testing.T) {
	var vector checkpointVector
	blocks := vectors(t, "tests/integrity/test_checkpoint.py")
	if err := json.Unmarshal(blocks[len(blocks)-1], &vector); err != nil {
		t.Fatal(err)
	}
	value := vector.Checkpoints[0].RecordValue
	for name, changed := range map[string]string{
		"a key twice":      strings.Replace(value, `{"chain"`, `{"seq":2,"chain"`, 1),
		"count not seq+1":  strings.Replace(value, `"count":3`, `"count":4`, 1),
		"a float":          strings.Replace(value, `"seq":2`, `"seq":2.0`, 1),
		"an extra field":   strings.Replace(value, `{"chain"`, `{"x":1,"chain"`, 1),
		"a bad time":       strings.Replace(value, "2026-12-01T", "2026-12-01 ", 1),
		"not UTF-8":        value + "\xff",
		"a note of size 4": strings.Replace(value, `\n3\n`, `\n4\n`, 1),
	} {
		if _, ok := parseCheckpoint([]byte(changed)); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestFastAndGeneralPathsReadLinesAlike(t *testing.T) {
	canonical := `{"headers":[["rg-seq","MA=="],["x",null]],"key":"dXNlcg==","offset":7,"partition":2,"timestamp":1,"topic":"té","value":"e30="}`
	fast, ok := fastLine([]byte(canonical))
	if !ok {
		t.Fatal("the fast path does not read a canonical line")
	}
	general, ok := generalLine([]byte(canonical))
	if !ok {
		t.Fatal("the general path does not read a canonical line")
	}
	if fast.topic != general.topic || fast.offset != general.offset || fast.partition != general.partition ||
		!bytes.Equal(fast.key, general.key) || !bytes.Equal(fast.value, general.value) ||
		len(fast.headers) != len(general.headers) || fast.headers[1].value != nil {
		t.Fatalf("fast %+v, general %+v", fast, general)
	}
	// Other spellings go the general way, and read the same.
	spaced := strings.ReplaceAll(canonical, ",", ", ")
	if _, ok := fastLine([]byte(spaced)); ok {
		t.Fatal("the fast path took a line that is not canonical")
	}
	if line, ok := decodeLine([]byte(spaced)); !ok || line.offset != 7 || string(line.value) != "{}" {
		t.Fatalf("the general path read %+v", line)
	}
	for _, bad := range []string{
		strings.Replace(canonical, `"offset":7`, `"offset":7.0`, 1),
		strings.Replace(canonical, `"value":"e30="`, `"value":"e30"`, 1),
		strings.Replace(canonical, `["x",null]`, `["x"]`, 1),
		strings.Replace(canonical, `"timestamp":1,`, ``, 1),
	} {
		if _, ok := decodeLine([]byte(bad)); ok {
			t.Errorf("read a line not of the form: %s", bad)
		}
	}
}

func TestNotesAreReadStrictly(t *testing.T) {
	good := "origin\n1\n" + strings.Repeat("A", 43) + "=\n\n\u2014 name " + "AAAAAAAA" + "\n"
	if _, err := parseNote([]byte(good)); err != nil {
		t.Fatalf("a note of the form: %v", err)
	}
	for name, bad := range map[string]string{
		"no blank line":         "origin\n1\n",
		"a signature unpadded":  strings.Replace(good, "AAAAAAAA\n", "AAAAAAA\n", 1),
		"a name with a plus":    strings.Replace(good, " name ", " na+me ", 1),
		"a control character":   strings.Replace(good, "origin", "or\tigin", 1),
		"no dash":               strings.Replace(good, "\u2014 ", "- ", 1),
		"a signature too short": strings.Replace(good, "AAAAAAAA\n", "AAAA\n", 1),
	} {
		if _, err := parseNote([]byte(bad)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := parseTreeHead("origin\n01\n" + strings.Repeat("A", 43) + "=\n"); err == nil {
		t.Error("a size with a leading zero parsed")
	}
}

func TestTheReportIsPythonsJSON(t *testing.T) {
	rep := &report{bundle: "b\u00e9.zip", trustedKeys: "given", problems: []finding{{kind: "forged", topic: ptr("t"), offset: ptr(int64(3))}}}
	text := string(rep.JSON())
	for _, want := range []string{`"bundle": "b\u00e9.zip"`, `"partition": null`, `"offset": 3`, `"bad_proof": 0`, `"forged": 1`, `"clean": false`, `"warnings": []`} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in\n%s", want, text)
		}
	}
	var decoded map[string]any
	if err := json.Unmarshal(rep.JSON(), &decoded); err != nil {
		t.Fatal(err)
	}
}

func TestAFileThatIsNotABundleExitsTwo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.zip")
	if err := os.WriteFile(path, []byte("PK\x03\x04 not a zip"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"--bundle", path, "--json"}, &out, &errs); code != 2 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if code := run([]string{"--json"}, &out, &errs); code != 2 {
		t.Fatalf("no --bundle: exit %d", code)
	}
}
