package main

import (
	"os"
	"testing"
)

// BenchmarkVerifyBundle checks the bundle RG_BENCH_BUNDLE with the key RG_BENCH_KEY (PEM),
// for profiles: make the bundle with bench/goverifier.py's make_bundle, then
//
//	RG_BENCH_BUNDLE=b.zip RG_BENCH_KEY=pub.pem GOMAXPROCS=1 go test -run - -bench VerifyBundle \
//	    -benchtime 1x -cpuprofile cpu.prof && go tool pprof -top cpu.prof
func BenchmarkVerifyBundle(b *testing.B) {
	path, key := os.Getenv("RG_BENCH_BUNDLE"), os.Getenv("RG_BENCH_KEY")
	if path == "" || key == "" {
		b.Fatal("RG_BENCH_BUNDLE and RG_BENCH_KEY name the bundle and its public key")
	}
	for b.Loop() {
		rep, err := verifyBundle(path, []string{key}, "", false, false)
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.problems) > 0 {
			b.Fatalf("not clean: %d problems", len(rep.problems))
		}
	}
}
