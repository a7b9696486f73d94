package configs

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
)

// Examples holds the example topologies shipped with socialroute, one YAML
// file each at the top level (two-continents.yaml, local.yaml). They are
// documentation as much as data: every section is commented for a newcomer.
//
//go:embed *.yaml
var Examples embed.FS

// Example parses, defaults and validates the embedded example called name,
// e.g. "two-continents.yaml" (the ".yaml" may be left out). The returned
// Config has an empty Path, since it comes from no file on disk.
func Example(name string) (*Config, error) {
	if !strings.HasSuffix(name, ".yaml") {
		name += ".yaml"
	}
	data, err := Examples.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("configs: no example %q (have %s)", name, strings.Join(ExampleNames(), ", "))
	}
	return Parse(data, name)
}

// ExampleNames lists the embedded examples' file names, sorted.
func ExampleNames() []string {
	// ReadDir of an embed.FS cannot fail for ".", and returns sorted names.
	entries, _ := fs.ReadDir(Examples, ".")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
