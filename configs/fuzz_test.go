package configs

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// made of *FieldError in our format, and that a config it accepts is
// valid.
func FuzzParse(f *testing.F) {
	for _, name := range ExampleNames() {
		data, err := Examples.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, doc := range []string{
		"",
		"---\n",
		"a: 1\n---\nb: 2\n",
		"- a\n- b\n",
		base(),
		base(`buckets: -1`, `homes: {"0-127": us, "100-200": mars, "9-3": us}`),
		base(`pins: {42: a, 1-5: a}`, `drained: [a, a, zz]`),
		base(`routing: {rules: [{header: "X User", cookie: uid}, {path: "/u/{key}x"}]}`),
		base(`listen: {address: "::::"}`, `upstream: {retries: 9, breaker: {open_for: -1s}}`),
		base(`  - {name: b, continent: us, capacity: .nan, upstreams: ["H:01", ":80"]}`),
		lines(`node: {datacenter: a}`, `continents: [{name: us}`, `datacenters: []`),
		lines(`x: &a [*a]`),
		lines(`a: &a {b: 1}`, `c: {<<: *a}`),
		lines(`node:`, "\tdatacenter: a"),
		lines(`node: {datacenter: a, capcity: 1}`),
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error")
			}
			fes := FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("error %q holds no *FieldError", err)
			}
			for _, fe := range fes {
				if !strings.HasPrefix(fe.Error(), "configs: fuzz.yaml") || fe.Line < 0 {
					t.Fatalf("badly formed error %q (line %d)", fe, fe.Line)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
	})
}
