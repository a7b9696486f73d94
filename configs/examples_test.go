package configs

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestExamplesLoad(t *testing.T) {
	t.Parallel()
	names := ExampleNames()
	if want := []string{"local.yaml", "two-continents.yaml"}; !slices.Equal(names, want) {
		t.Errorf("ExampleNames() = %v, want %v", names, want)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Example(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate after Example: %v", err)
			}
			// The file on disk is what the embed holds, and loads the same.
			if _, err := Load(name); err != nil {
				t.Errorf("Load(%q): %v", name, err)
			}
			// Every example explains itself: a comment header, and no
			// section without a comment above it.
			data, _ := Examples.ReadFile(name)
			if !strings.HasPrefix(string(data), "# "+name+":") {
				t.Errorf("%s does not open with a comment naming itself", name)
			}
			ls := strings.Split(string(data), "\n")
			for i, l := range ls {
				if l != "" && l[0] != '#' && l[0] != ' ' && (i == 0 || !strings.HasPrefix(ls[i-1], "#")) {
					t.Errorf("%s:%d: section %q has no comment above it", name, i+1, l)
				}
			}
		})
	}
}

func TestExampleTwoContinents(t *testing.T) {
	t.Parallel()
	cfg, err := Example("two-continents.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Datacenter != "us-east" || cfg.Listen.Address != "127.0.0.1:8080" || cfg.Buckets != 4096 {
		t.Errorf("node/listen/buckets = %q, %q, %d", cfg.Node.Datacenter, cfg.Listen.Address, cfg.Buckets)
	}
	capacity := map[string]float64{}
	count := map[string]int{}
	for i, dc := range cfg.Datacenters {
		capacity[dc.Continent] += dc.Capacity
		count[dc.Continent]++
		// Datacenter N (1-based, in file order) is 127.0.1.N, ports 9001 and 9002.
		want := []string{fmt.Sprintf("127.0.1.%d:9001", i+1), fmt.Sprintf("127.0.1.%d:9002", i+1)}
		if !slices.Equal(dc.Upstreams, want) {
			t.Errorf("%s upstreams = %v, want %v", dc.Name, dc.Upstreams, want)
		}
	}
	if count["us"] != 5 || count["eu"] != 3 || capacity["us"] != 460 || capacity["eu"] != 240 {
		t.Errorf("datacenters per continent %v, capacity %v; want us 5/460, eu 3/240 (update the header comment too)", count, capacity)
	}
	if len(cfg.Continents) != 2 || cfg.Continents[0].Name != "us" || len(cfg.Continents[0].FailoverTo) != 0 {
		t.Errorf("continents = %+v, want us first, failing over nowhere", cfg.Continents)
	}
	wantRules := []Rule{{Path: "/users/{key}"}, {Path: "/accounts/{key}"}, {Header: "X-User-ID"}, {Cookie: "uid"}, {Query: "user_id"}}
	if !slices.Equal(cfg.Routing.Rules, wantRules) || cfg.Routing.NoKey != NoKeyLocal {
		t.Errorf("routing = %+v", cfg.Routing)
	}
}

func TestExampleLocal(t *testing.T) {
	t.Parallel()
	cfg, err := Example("local") // the extension may be left out
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Continents) != 2 || len(cfg.Datacenters) > 4 {
		t.Errorf("local.yaml is no longer small: %d continents, %d datacenters", len(cfg.Continents), len(cfg.Datacenters))
	}
	for _, dc := range cfg.Datacenters {
		for _, u := range dc.Upstreams {
			if !strings.HasPrefix(u, "127.0.0.1:") {
				t.Errorf("%s upstream %q is not on 127.0.0.1", dc.Name, u)
			}
		}
	}
}

func TestExampleUnknown(t *testing.T) {
	t.Parallel()
	_, err := Example("mars.yaml")
	if err == nil || !strings.Contains(err.Error(), `no example "mars.yaml" (have local.yaml, two-continents.yaml)`) {
		t.Errorf("Example(mars) = %v", err)
	}
}

// TestExamplesAreTheFiles guards against an example being edited in a
// copy: the embedded bytes are the files in this folder.
func TestExamplesAreTheFiles(t *testing.T) {
	t.Parallel()
	for _, name := range ExampleNames() {
		disk, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		embedded, _ := Examples.ReadFile(name)
		if string(disk) != string(embedded) {
			t.Errorf("%s differs from its embedded copy", name)
		}
	}
}

// TestReferenceNamesEveryField keeps the README's promise that
// two-continents.yaml documents every setting: each YAML field of Config,
// at any depth, appears in it as "name:" (most as a commented default).
func TestReferenceNamesEveryField(t *testing.T) {
	t.Parallel()
	data, _ := Examples.ReadFile("two-continents.yaml")
	text := string(data)
	var missing []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !regexp.MustCompile(`(?m)^[ #]*(- )?` + name + `:`).MatchString(text) {
				missing = append(missing, prefix+name)
			}
			walk(prefix+name+".", f.Type)
		}
	}
	walk("", reflect.TypeFor[Config]())
	if len(missing) > 0 {
		t.Errorf("two-continents.yaml never names %d fields: %s", len(missing), strings.Join(missing, ", "))
	}
}
