// Package configs defines socialroute's configuration format: loading,
// defaults and validation, and the example topologies it ships.
//
// A config is one YAML document describing one proxy node: the node itself
// (name, datacenter it stands in), the client listener, upstream connection
// settings, the topology (continents in failover order, datacenters with
// capacities and upstream addresses), bucket overrides (homes, pins,
// drained) and how a request's routing key is found.
//
// Loading goes in three steps, each in one place:
//
//  1. Parse decodes strictly: unknown or misspelled fields, duplicate keys,
//     an empty document and several documents are errors, so a typo never
//     silently falls back to a default.
//  2. Config.ApplyDefaults fills every unset field from the Default*
//     constants. A zero duration or number means "use the default".
//  3. Config.Validate checks the whole config and reports every problem at
//     once, each as a *FieldError naming the field by its YAML path
//     ("datacenters[2].capacity", `homes["0-127"]`) and, when parsed from
//     YAML, the line it is on.
//
// Errors read like compiler errors:
//
//	configs: two-continents.yaml:14: datacenters[2].capacity: must be greater than 0
//
// The example topologies (Examples, Example, ExampleNames) are embedded
// YAML files that double as documentation: two-continents.yaml is the
// Instagram-style US/EU split the demo runs, local.yaml the smallest useful
// config.
package configs
