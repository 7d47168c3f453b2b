// zipcheck reads an evidence bundle (docs/auditors.md, rg-bundle-v1) with Go's standard library
// only: archive/zip for the container (each member's CRC-32 checked as it is read),
// crypto/sha256 for the members, crypto/x509 and crypto/ed25519 for the manifest's signature.
// It tells whether a reader in another language takes the bundle as the page describes it.
//
// Usage: zipcheck BUNDLE PUBLIC_KEY_PEM. It prints one JSON object: each member's name,
// SHA-256 and size in the ZIP's order, and whether manifest.sig verifies manifest.json with the
// key; or {"error": ...} with exit status 1 when a member cannot be read.
package main

import (
	"archive/zip"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
)

type member struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

type answer struct {
	Members         []member `json:"members"`
	SignatureValid  bool     `json:"signature_valid"`
	ManifestMembers int      `json:"manifest_members"`
}

func fail(format string, args ...any) {
	out, _ := json.Marshal(map[string]string{"error": fmt.Sprintf(format, args...)})
	fmt.Println(string(out))
	os.Exit(1)
}

func publicKey(path string) ed25519.PublicKey {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		fail("%s: not PEM", path)
	}
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		fail("%s: %v", path, err)
	}
	key, ok := parsed.(ed25519.PublicKey)
	if !ok {
		fail("%s: not an Ed25519 key", path)
	}
	return key
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: zipcheck BUNDLE PUBLIC_KEY_PEM")
	}
	key := publicKey(os.Args[2])
	archive, err := zip.OpenReader(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	defer archive.Close()
	var result answer
	contents := map[string][]byte{}
	for _, file := range archive.File {
		if file.Method != zip.Store && file.Method != zip.Deflate {
			fail("%s: method %d is neither stored nor deflated", file.Name, file.Method)
		}
		reader, err := file.Open()
		if err != nil {
			fail("%s: %v", file.Name, err)
		}
		// ReadAll reaches the end of the member, where archive/zip checks its CRC-32.
		data, err := io.ReadAll(reader)
		reader.Close()
		if err != nil {
			fail("%s: %v", file.Name, err)
		}
		sum := sha256.Sum256(data)
		result.Members = append(result.Members, member{file.Name, hex.EncodeToString(sum[:]), len(data)})
		contents[file.Name] = data
	}
	signature := strings.TrimSuffix(string(contents["manifest.sig"]), "\n")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(signature)
	result.SignatureValid = err == nil && len(raw) == ed25519.SignatureSize &&
		ed25519.Verify(key, contents["manifest.json"], raw)
	var manifest struct {
		Members map[string]json.RawMessage `json:"members"`
	}
	if json.Unmarshal(contents["manifest.json"], &manifest) == nil {
		result.ManifestMembers = len(manifest.Members)
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}
