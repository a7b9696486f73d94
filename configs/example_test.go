package configs_test

import (
	"fmt"

	"github.com/socialroute/socialroute/configs"
)

func ExampleParse() {
	// Two problems: the datacenter has no capacity, and the node stands in
	// a datacenter that does not exist. Both are reported, with lines.
	_, err := configs.Parse([]byte(`
node:
  datacenter: us-north
continents:
  - name: us
datacenters:
  - name: us-east
    continent: us
    upstreams: ["10.0.0.1:80"]
`), "edge.yaml")
	fmt.Println(err)
	for _, fe := range configs.FieldErrors(err) {
		fmt.Printf("%s at line %d\n", fe.Field, fe.Line)
	}
	// Output:
	// configs: edge.yaml:3: node.datacenter: unknown datacenter "us-north"
	// configs: edge.yaml:7: datacenters[0].capacity: must be greater than 0
	// node.datacenter at line 3
	// datacenters[0].capacity at line 7
}

func ExampleParseBucketRange() {
	for _, key := range []string{"42", "0-127", "127-0"} {
		lo, hi, err := configs.ParseBucketRange(key)
		fmt.Println(lo, hi, err)
	}
	// Output:
	// 42 42 <nil>
	// 0 127 <nil>
	// 0 0 configs: invalid bucket range "127-0": 127 is greater than 0
}

func ExampleExample() {
	cfg, err := configs.Example("two-continents.yaml")
	if err != nil {
		panic(err)
	}
	for _, dc := range cfg.Datacenters {
		fmt.Println(dc.Continent, dc.Name, dc.Capacity)
	}
	// Output:
	// us us-east 100
	// us us-east-2 100
	// us us-central 80
	// us us-west 120
	// us us-west-2 60
	// eu eu-west 100
	// eu eu-central 80
	// eu eu-north 60
}
