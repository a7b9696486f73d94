package configs

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, decodes, defaults and validates the config file at path, and
// sets Config.Path. Problems with the content come back as errors.Join of
// *FieldError naming path and line (see Parse); a file that cannot be read
// gives the *fs.PathError, wrapped.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configs: %w", err)
	}
	cfg, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	return cfg, nil
}

// Parse decodes one YAML document into a Config, applies defaults and
// validates it. name says where data came from and prefixes every message
// ("configs: name:line: field: problem"); it is not stored in the Config.
//
// Decoding is strict: unknown or misspelled fields, duplicate keys, values
// of the wrong type, an empty document and more than one document are
// errors. On failure Parse returns a nil Config and errors.Join of
// *FieldError, in line order, each with the line the problem is on: decode
// errors stop before validation, while validation reports every problem.
// The line of a YAML syntax error is the YAML parser's, which can point at
// the start of the enclosing block or a line early.
func Parse(data []byte, name string) (*Config, error) {
	root, ferr := parseTree(data, name)
	if ferr != nil {
		return nil, errors.Join(ferr)
	}

	// A second pass decodes into the structs: yaml.Node.Decode has no
	// KnownFields, and configs are small enough to parse twice.
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := safeDecode(dec, &cfg); err != nil {
		return nil, decodeError(err, root, name)
	}

	cfg.ApplyDefaults()
	err := cfg.Validate()
	if err == nil {
		return &cfg, nil
	}
	fes := FieldErrors(err)
	for _, fe := range fes {
		fe.File = name
		fe.Line = lineOf(root, fe.Field)
	}
	return nil, joinSorted(fes)
}

// parseTree decodes data into a node tree, which Parse keeps to find the
// line of each problem, and returns the document's top mapping. It rejects
// syntax errors, an empty document, several documents and a document that
// is not a mapping.
func parseTree(data []byte, name string) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := safeDecode(dec, &doc); {
	case errors.Is(err, io.EOF):
		return nil, &FieldError{File: name, Msg: "empty document: want a mapping of settings"}
	case err != nil:
		return nil, syntaxError(err, name)
	}
	var extra yaml.Node
	switch err := safeDecode(dec, &extra); {
	case err == nil:
		return nil, &FieldError{File: name, Line: extra.Line, Msg: "more than one YAML document: want one config per file"}
	case !errors.Is(err, io.EOF):
		return nil, syntaxError(err, name)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{File: name, Msg: "empty document: want a mapping of settings"}
	}
	root := doc.Content[0]
	switch {
	case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		return nil, &FieldError{File: name, Line: root.Line, Msg: "empty document: want a mapping of settings"}
	case root.Kind != yaml.MappingNode:
		return nil, &FieldError{File: name, Line: root.Line, Msg: "want a mapping of settings, got " + kindName(root)}
	}
	return root, nil
}

// safeDecode turns a panic inside the YAML decoder into an error: a bad
// config pushed to a running proxy must fail its reload, not the process.
func safeDecode(dec *yaml.Decoder, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: decoder failed: %v", r)
		}
	}()
	return dec.Decode(v)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a single value"
	}
}

// yamlLine matches yaml's "line N: message", with or without the "yaml: "
// prefix of syntax errors.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError rewrites "yaml: line 3: did not find expected key" into our
// form, "configs: name:3: did not find expected key".
func syntaxError(err error, name string) *FieldError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: name, Line: line, Msg: m[2]}
	}
	return &FieldError{File: name, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// decodeError rewrites the second pass's errors. A *yaml.TypeError holds one
// "line N: ..." message per bad field; each becomes a FieldError with the
// field's path, found by looking for the offending node on that line.
func decodeError(err error, root *yaml.Node, name string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.Join(syntaxError(err, name))
	}
	fes := make([]*FieldError, 0, len(te.Errors))
	for _, msg := range te.Errors {
		fe := &FieldError{File: name, Msg: msg}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			fe.Line, _ = strconv.Atoi(m[1])
			fe.Field, fe.Msg = explainTypeError(root, fe.Line, m[2])
		}
		fes = append(fes, fe)
	}
	return joinSorted(fes)
}

var (
	unknownField  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	fieldSetTwice = regexp.MustCompile(`^field (\S+) already set in type \S+$`)
	duplicateKey  = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	wrongType     = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// explainTypeError turns one of yaml's decode messages about line into a
// field path and a message in our words. Messages it does not know are
// kept as they are.
func explainTypeError(root *yaml.Node, line int, msg string) (field, out string) {
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		field, parent := keyPath(root, line, m[1])
		return field, "unknown field" + suggest(m[1], parent)
	}
	if m := fieldSetTwice.FindStringSubmatch(msg); m != nil {
		field, _ := keyPath(root, line, m[1])
		return field, "set twice"
	}
	if m := duplicateKey.FindStringSubmatch(msg); m != nil {
		field, _ := keyPath(root, line, m[1])
		return field, "duplicate key (first at line " + m[2] + ")"
	}
	if m := wrongType.FindStringSubmatch(msg); m != nil {
		tag, value, goType := m[1], m[2], m[3]
		field := valuePath(root, line, tag, value)
		got := tag
		if value != "" {
			got += " `" + value + "`"
		}
		return field, "want " + describeType(goType) + ", got " + got
	}
	return "", msg
}

// describeType names a Go type the way a YAML author thinks of it.
func describeType(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration with a unit such as \"10s\" or \"250ms\""
	case goType == "string":
		return "a string"
	case goType == "bool" || goType == "*bool":
		return "true or false"
	case goType == "float64":
		return "a number"
	case strings.Contains(goType, "int"):
		return "an integer"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "configs."):
		return "a mapping"
	}
	return goType
}

// step is one level of a walk down the node tree: the path so far and the
// Go type the node decodes into (nil when unknown, e.g. under a field that
// does not exist).
type step struct {
	node *yaml.Node
	path string
	typ  reflect.Type
}

var configType = reflect.TypeFor[Config]()

// children lists a node's children with their paths: struct fields as
// ".name", map entries as `["key"]`, list items as "[i]".
func children(s step) []step {
	n := s.node
	typ := s.typ
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	var out []step
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			c := step{node: v}
			switch {
			case typ != nil && typ.Kind() == reflect.Map:
				c.path = s.path + "[" + strconv.Quote(k.Value) + "]"
				c.typ = typ.Elem()
			default:
				c.path = joinField(s.path, k.Value)
				if f, ok := fieldByTag(typ, k.Value); ok {
					c.typ = f.Type
				}
			}
			// The key itself, so that a search by line finds keys too.
			out = append(out, step{node: k, path: c.path, typ: nil}, c)
		}
	case yaml.SequenceNode:
		var elem reflect.Type
		if typ != nil && typ.Kind() == reflect.Slice {
			elem = typ.Elem()
		}
		for i, item := range n.Content {
			out = append(out, step{node: item, path: s.path + "[" + strconv.Itoa(i) + "]", typ: elem})
		}
	}
	return out
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fieldByTag finds the struct field whose yaml tag is name.
func fieldByTag(typ reflect.Type, name string) (reflect.StructField, bool) {
	if typ == nil || typ.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// walk visits every node below root in document order; visit returns false
// to stop.
func walk(root *yaml.Node, visit func(s step, isKey bool, parent step) bool) {
	var rec func(s step) bool
	rec = func(s step) bool {
		kids := children(s)
		for i, c := range kids {
			isKey := s.node.Kind == yaml.MappingNode && i%2 == 0
			if !visit(c, isKey, s) {
				return false
			}
			if !isKey && !rec(c) {
				return false
			}
		}
		return true
	}
	rec(step{node: root, typ: configType})
}

// keyPath finds the mapping key name on line and returns its path and the
// Go type of the mapping holding it. Without a match it returns name
// alone.
func keyPath(root *yaml.Node, line int, name string) (string, reflect.Type) {
	path, parent := name, reflect.Type(nil)
	walk(root, func(s step, isKey bool, p step) bool {
		if isKey && s.node.Line == line && s.node.Value == name {
			path, parent = s.path, p.typ
			return false
		}
		return true
	})
	return path, parent
}

// valuePath finds the value yaml complained about on line: a list or a
// mapping for the !!seq and !!map tags, a single value otherwise. Several
// candidates on one line (a flow list such as [a, b]) are told apart by
// the value yaml quoted, else their common parent is named.
func valuePath(root *yaml.Node, line int, tag, quoted string) string {
	wantKind := yaml.ScalarNode
	switch tag {
	case "!!seq":
		wantKind = yaml.SequenceNode
	case "!!map":
		wantKind = yaml.MappingNode
	}
	var found []step
	walk(root, func(s step, isKey bool, _ step) bool {
		if !isKey && s.node.Line == line && s.node.Kind == wantKind {
			found = append(found, s)
		}
		return true
	})
	if len(found) > 1 && quoted != "" && !strings.HasSuffix(quoted, "...") {
		var same []step
		for _, s := range found {
			if s.node.Value == quoted {
				same = append(same, s)
			}
		}
		if len(same) > 0 {
			found = same
		}
	}
	switch len(found) {
	case 0:
		return ""
	case 1:
		return found[0].path
	}
	prefix := found[0].path
	for _, s := range found[1:] {
		prefix = commonParent(prefix, s.path)
	}
	return prefix
}

// commonParent returns the longest path both a and b lie under.
func commonParent(a, b string) string {
	sa, _ := splitPath(a)
	sb, _ := splitPath(b)
	n := 0
	for n < len(sa) && n < len(sb) && sa[n] == sb[n] {
		n++
	}
	return formatPath(sa[:n])
}

// suggest returns a hint for an unknown field: the closest known field if
// one is close, else the list of known fields.
func suggest(name string, parent reflect.Type) string {
	if parent == nil || parent.Kind() != reflect.Struct {
		return ""
	}
	var known []string
	for i := range parent.NumField() {
		if tag, _, _ := strings.Cut(parent.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			known = append(known, tag)
		}
	}
	best, bestDist := "", len(name)/3+1 // allow about one typo per three letters
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d <= bestDist && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known: " + strings.Join(known, ", ") + ")"
}

// editDistance is the Levenshtein distance, for suggesting field names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// segment is one element of a field path: a name ("capacity"), an index
// ([2]) or a map key (["0-127"]).
type segment struct {
	name  string
	index int // -1 unless an index
	key   bool
}

// splitPath parses a field path as FieldError.Field writes it:
// `a.b[2].c["k"]`. It reports false for a malformed path.
func splitPath(p string) ([]segment, bool) {
	var segs []segment
	for p != "" {
		switch {
		case strings.HasPrefix(p, `["`):
			q, err := strconv.QuotedPrefix(p[1:])
			if err != nil || !strings.HasPrefix(p[1+len(q):], "]") {
				return segs, false
			}
			k, _ := strconv.Unquote(q)
			segs = append(segs, segment{name: k, index: -1, key: true})
			p = p[1+len(q)+1:]
		case strings.HasPrefix(p, "["):
			end := strings.IndexByte(p, ']')
			i, err := strconv.Atoi(p[1:max(end, 1)])
			if end < 0 || err != nil || i < 0 {
				return segs, false
			}
			segs = append(segs, segment{index: i})
			p = p[end+1:]
		default:
			p = strings.TrimPrefix(p, ".")
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			if end == 0 {
				return segs, false
			}
			segs = append(segs, segment{name: p[:end], index: -1})
			p = p[end:]
		}
	}
	return segs, true
}

// formatPath is the inverse of splitPath.
func formatPath(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		switch {
		case s.key:
			b.WriteString("[" + strconv.Quote(s.name) + "]")
		case s.index >= 0:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.name)
		}
	}
	return b.String()
}

// lineOf walks the node tree along field and returns the line to report:
// a mapping entry's key line, a list item's line, or, where the path
// leaves the tree (a missing field, a value set by ApplyDefaults), the line
// of the mapping that should hold it.
func lineOf(root *yaml.Node, field string) int {
	segs, _ := splitPath(field)
	n, line := root, root.Line
	for _, s := range segs {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if s.index >= 0 {
			if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
				return line
			}
			n = n.Content[s.index]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value == s.name {
				n, line, found = n.Content[i+1], k.Line, true
				break
			}
		}
		if !found {
			return n.Line
		}
	}
	return line
}

// joinSorted joins field errors in line order, so that they read top to
// bottom like the file; problems on one line keep their order.
func joinSorted(fes []*FieldError) error {
	slices.SortStableFunc(fes, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(fes))
	for i, fe := range fes {
		errs[i] = fe
	}
	return errors.Join(errs...)
}
