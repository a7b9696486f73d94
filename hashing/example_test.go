package hashing_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/socialroute/socialroute/hashing"
)

// The offline partitioner builds a table; the proxy loads it and asks an
// Assigner for each user's bucket.
func ExampleAssigner() {
	const n = 4096
	b, err := hashing.NewTableBuilder(n, 2)
	if err != nil {
		log.Fatal(err)
	}
	b.Add("alice", 7) // alice and carol are friends: same bucket
	b.Add("carol", 7)
	t, err := b.Build()
	if err != nil {
		log.Fatal(err)
	}

	// Ship it as a file and read it back.
	var file bytes.Buffer
	if _, err := t.WriteTo(&file); err != nil {
		log.Fatal(err)
	}
	t, err = hashing.ReadTable(&file)
	if err != nil {
		log.Fatal(err)
	}

	a, err := hashing.NewAssigner(n, t)
	if err != nil {
		log.Fatal(err)
	}
	for _, user := range []string{"alice", "carol", "bob"} {
		bucket, fromTable := a.Bucket(hashing.HashString(user))
		fmt.Println(user, bucket, fromTable)
	}
	// Output:
	// alice 7 true
	// carol 7 true
	// bob 59 false
}
