// Command rg-verify checks an evidence bundle of ractogateway-kafka (docs/auditors.md) offline,
// with no broker and no network, and prints the same report as
// `ractogateway-kafka verify --bundle FILE --json`. It is a second, independent implementation
// of the check: an auditor who does not trust the project's Python need not trust it here.
//
//	rg-verify --bundle FILE --public-key KEY.pem[@UNTIL] [--public-key ...] [--manifest-key KEY.pem]
//	          [--trust-bundle-keys] [--strict] [--json]
//
// Exit codes as verify's: 0 clean (warnings allowed), 1 problems, 2 not a bundle or no key.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
)

type keyFlags []string

func (k *keyFlags) String() string     { return strings.Join(*k, ",") }
func (k *keyFlags) Set(v string) error { *k = append(*k, v); return nil }

func main() {
	// What is kept of each record is small and kept until the end: collect garbage less often.
	debug.SetGCPercent(400)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("rg-verify", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var publicKeys keyFlags
	flags.Var(&publicKeys, "public-key", "Ed25519 public key (PEM) you trust, FILE or FILE@UNTIL (RFC 3339: the key's retirement); repeatable")
	bundlePath := flags.String("bundle", "", "the evidence bundle (a ZIP made by `ractogateway-kafka export`)")
	manifestKey := flags.String("manifest-key", "", "an exporter's public key (PEM), trusted for the manifest only")
	trustBundle := flags.Bool("trust-bundle-keys", false, "trust the keys the bundle carries (shows only that it is consistent with itself)")
	strict := flags.Bool("strict", false, "records without a proof and writers the log does not know are problems")
	asJSON := flags.Bool("json", false, "print the report as one JSON document")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *bundlePath == "" {
		_, _ = fmt.Fprintln(stderr, "rg-verify: --bundle FILE is required")
		return 2
	}
	rep, err := verifyBundle(*bundlePath, publicKeys, *manifestKey, *trustBundle, *strict)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "rg-verify: %v\n", err)
		return 2
	}
	if *asJSON {
		_, _ = stdout.Write(rep.JSON())
	} else {
		printText(stdout, rep)
	}
	if len(rep.problems) > 0 {
		return 1
	}
	return 0
}

func verifyBundle(path string, specs []string, manifestKeyPath string, trustBundle, strict bool) (*report, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--bundle %s: %w", path, err)
	}
	defer func() { _ = file.Close() }()
	info, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("--bundle %s: %w", path, err)
	}
	b, err := readBundle(newWindowReader(file), info.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	keys, err := loadKeys(specs)
	if err != nil {
		return nil, err
	}
	var manifestKey ed25519.PublicKey
	if manifestKeyPath != "" {
		only, err := loadKeys([]string{manifestKeyPath})
		if err != nil {
			return nil, err
		}
		for _, key := range only {
			manifestKey = key.key
		}
	}
	if trustBundle {
		carried, err := bundleKeys(b.members[memberKeys])
		if err != nil {
			return nil, err
		}
		for id, key := range keys {
			carried[id] = key
		}
		keys = carried
	}
	if len(keys) == 0 {
		return nil, errors.New("--bundle needs the keys you trust: --public-key FILE (or --trust-bundle-keys)")
	}
	c := &checker{keys: keys, manifestKey: manifestKey, strict: strict}
	rep := c.check(b)
	rep.bundle = path
	rep.trustedKeys = "given"
	if trustBundle {
		rep.trustedKeys = "bundle"
	}
	return rep, nil
}

// parseUntil: the end of a key's validity, RFC 3339 with its offset.
func parseUntil(text string) (time.Time, error) {
	moment, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(text))
	if err != nil {
		return time.Time{}, err
	}
	return moment.UTC().Truncate(time.Microsecond), nil
}

func publicKeyOf(pemText []byte) (ed25519.PublicKey, bool) {
	block, _ := pem.Decode(pemText)
	if block == nil {
		return nil, false
	}
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, false
	}
	key, ok := parsed.(ed25519.PublicKey)
	return key, ok
}

// derivedKeyID: the first 16 hex digits of SHA-256 of the raw public key.
func derivedKeyID(key ed25519.PublicKey) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])[:16]
}

// loadKeys reads FILE or FILE@UNTIL: each key under its derived id, and under its file's name
// too when that is <key_id>.pub.pem or <key_id>.pem.
func loadKeys(specs []string) (map[string]trustedKey, error) {
	keys := map[string]trustedKey{}
	for _, spec := range specs {
		path, until := spec, time.Time{}
		if at := strings.LastIndex(spec, "@"); at >= 0 {
			if _, err := os.Stat(spec); err != nil {
				moment, err := parseUntil(spec[at+1:])
				if err != nil {
					return nil, fmt.Errorf("--public-key %s: after @, the time the key was retired (RFC 3339)", spec)
				}
				path, until = spec[:at], moment
			}
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--public-key %s: not a readable PEM public key", path)
		}
		key, ok := publicKeyOf(text)
		if !ok {
			return nil, fmt.Errorf("--public-key %s: not an Ed25519 public key (PEM)", path)
		}
		ids := []string{derivedKeyID(key)}
		name := filepath.Base(path)
		for _, suffix := range []string{".pub.pem", ".pem"} {
			if strings.HasSuffix(name, suffix) && len(name) > len(suffix) {
				ids = append(ids, strings.TrimSuffix(name, suffix))
				break
			}
		}
		for _, id := range ids {
			keys[id] = trustedKey{key, until}
		}
	}
	return keys, nil
}

// bundleKeys: the keys of keys.json, for --trust-bundle-keys.
func bundleKeys(data []byte) (map[string]trustedKey, error) {
	bad := errors.New("--trust-bundle-keys: the bundle's keys.json cannot be read")
	var document struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	found, err := object(data)
	if err != nil || json.Unmarshal(found["keys"], &document.Keys) != nil {
		return nil, bad
	}
	keys := map[string]trustedKey{}
	for _, entry := range document.Keys {
		pemText, ok := asString(entry["public_key_pem"])
		id, isID := asString(entry["key_id"])
		if !ok || !isID {
			return nil, bad
		}
		key, ok := publicKeyOf([]byte(pemText))
		if !ok {
			return nil, bad
		}
		until := time.Time{}
		if !isNull(entry["until"]) {
			text, isText := asString(entry["until"])
			if !isText {
				return nil, bad
			}
			if until, err = parseUntil(text); err != nil {
				return nil, bad
			}
		}
		keys[id] = trustedKey{key, until}
	}
	return keys, nil
}

func printText(out io.Writer, rep *report) {
	state := "clean"
	if len(rep.problems) > 0 {
		state = fmt.Sprintf("%d problem(s)", len(rep.problems))
	}
	_, _ = fmt.Fprintf(out, "bundle %s: %s; %d records checked, %d valid; %d checkpoints checked, %d valid; %d writers\n",
		rep.bundle, state, rep.recordsChecked, rep.recordsValid, rep.checkpointsCheck, rep.checkpointsValid, rep.writers)
	for _, list := range []struct {
		label    string
		findings []finding
	}{{"problem", rep.problems}, {"warning", rep.warnings}} {
		for _, f := range list.findings {
			where := []string{}
			if f.topic != nil {
				where = append(where, *f.topic)
			}
			if f.partition != nil {
				where = append(where, fmt.Sprintf("partition %d", *f.partition))
			}
			if f.offset != nil {
				where = append(where, fmt.Sprintf("offset %d", *f.offset))
			}
			if f.writer != nil {
				where = append(where, "writer "+*f.writer)
			}
			if f.seq != nil {
				where = append(where, fmt.Sprintf("seq %d", *f.seq))
			}
			_, _ = fmt.Fprintf(out, "%s %s: %s\n", list.label, f.kind, strings.Join(where, " "))
		}
	}
	if rep.trustedKeys == "bundle" {
		_, _ = fmt.Fprintln(out, "warning: keys taken from the bundle itself: this shows the bundle is consistent, not who made it")
	}
}
