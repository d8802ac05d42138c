// Package stackfile checks an edge stack's compose file before it is sent
// to a fleet: with Compose's own loader, as the devices will load it, and,
// when the loader refuses it, against the Compose schema as a whole, so that
// every schema problem is named at once with its line.
package stackfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v4"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Problem is one thing wrong with a compose file. Line is 1-based, 0 when
// the loader gives none.
type Problem struct {
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	}
	return p.Message
}

// Check loads compose as the project name with the interpolation variables
// env, the way the agent will, and returns nil when Compose accepts it.
//
// What Compose's loader allows: it stops at the first problem. So when it
// refuses the file, Check validates the interpolated file against the
// Compose schema itself and returns every schema problem, each with the
// line it is on. A YAML syntax error stops parsing, so it comes alone, with
// its line. Problems Compose finds only after the schema holds (a service
// depending on one that does not exist, a value that does not convert)
// come one at a time, as the loader reports them.
func Check(name, compose string, env map[string]string) []Problem {
	loadErr := load(name, compose, env)
	if loadErr == nil {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(compose), &doc); err != nil {
		return []Problem{{Line: yamlLine(err.Error()), Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if ps := schemaProblems(&doc, env); len(ps) > 0 {
		return ps
	}
	return []Problem{{Line: yamlLine(loadErr.Error()), Message: loadErr.Error()}}
}

// load is Compose's loader with the settings of the devices, less what a
// server must not do (read files, resolve the server's environment).
func load(name, compose string, env map[string]string) error {
	details := types.ConfigDetails{
		WorkingDir:  "/",
		ConfigFiles: []types.ConfigFile{{Filename: "compose.yaml", Content: []byte(compose)}},
		Environment: maps.Clone(env), // the loader adds its own variables
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName(name, true)
		o.SkipResolveEnvironment = true
		o.SkipInclude = true // an include would read files from the server
		o.ResolvePaths = false
	})
	if err != nil {
		return err
	}
	if len(p.Services) == 0 {
		return errors.New("no services")
	}
	return nil
}

// lineRE finds the line in the yaml library's and the loader's messages.
var lineRE = regexp.MustCompile(`(?:line |at L)(\d+)`)

func yamlLine(msg string) int {
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// schemaProblems validates the interpolated document against the Compose
// schema and returns one problem per failing value.
func schemaProblems(doc *yaml.Node, env map[string]string) []Problem {
	var raw any
	if err := doc.Decode(&raw); err != nil {
		return nil
	}
	cfg, ok := raw.(map[string]any)
	if !ok {
		return []Problem{{Line: 1, Message: "the top level must be a mapping"}}
	}
	cfg, err := interpolation.Interpolate(cfg, interpolation.Options{LookupValue: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	if err != nil {
		return nil // the loader's own message says it better
	}
	sch, err := compiled()
	if err != nil {
		return nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil
	}
	var inst any
	if err := json.Unmarshal(b, &inst); err != nil {
		return nil
	}
	fails := validate(sch, inst)
	if len(fails) == 0 {
		return nil
	}
	lines := map[string]int{}
	index(doc, nil, lines)
	seen := map[string]bool{}
	var out []Problem
	for _, e := range fails {
		path := strings.Join(e.InstanceLocation, ".")
		p := Problem{Line: lineOf(lines, e.InstanceLocation), Message: describe(e)}
		if key := path + "\x00" + p.Message; !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.Message, b.Message)
	})
	return out
}

var (
	compileOnce sync.Once
	compiledSch *jsonschema.Schema
	compileErr  error
)

// compiled is the Compose schema the loader validates with.
func compiled() (*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema.Schema))
		if err != nil {
			compileErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if compileErr = c.AddResource("compose-spec.json", doc); compileErr != nil {
			return
		}
		c.RegisterFormat(&jsonschema.Format{Name: "duration", Validate: func(v any) error {
			s, ok := v.(string)
			if !ok {
				return errors.New("expected string")
			}
			_, err := time.ParseDuration(s)
			return err
		}})
		compiledSch, compileErr = c.Compile("compose-spec.json")
	})
	return compiledSch, compileErr
}

// validate returns every failure of inst against sch. A mapping that
// fails somewhere inside marks none of its keys as evaluated, so the
// schema's "no other keys" rule then names valid keys too. So the first
// pass keeps the real failures, and a second pass, with the failing values
// taken out, finds the keys that are not allowed.
func validate(sch *jsonschema.Schema, inst any) []*jsonschema.ValidationError {
	var verr *jsonschema.ValidationError
	if !errors.As(sch.Validate(inst), &verr) {
		return nil
	}
	var real, unknown []*jsonschema.ValidationError
	for _, e := range failures(verr) {
		if _, ok := e.ErrorKind.(*kind.FalseSchema); ok {
			unknown = append(unknown, e)
		} else {
			real = append(real, e)
		}
	}
	if len(real) == 0 {
		return unknown
	}
	for _, e := range real {
		remove(inst, e.InstanceLocation)
	}
	if !errors.As(sch.Validate(inst), &verr) {
		return real
	}
	for _, e := range failures(verr) {
		if _, ok := e.ErrorKind.(*kind.FalseSchema); ok {
			real = append(real, e)
		}
	}
	return real
}

// remove deletes from v the mapping key nearest above path.
func remove(v any, path []string) {
	var parent map[string]any
	var key string
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			parent, key = x, p
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return
			}
			v = x[i]
		default:
			return
		}
	}
	if parent != nil {
		delete(parent, key)
	}
}

// failures walks the error tree: where several keywords failed, each is a
// problem of its own; where a value matched none of several alternatives
// (oneOf, anyOf), the one problem is the alternative's most specific error,
// as Compose itself reports it.
func failures(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	switch e.ErrorKind.(type) {
	case *kind.OneOf, *kind.AnyOf:
		return []*jsonschema.ValidationError{mostSpecific(e)}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, failures(c)...)
	}
	return out
}

func mostSpecific(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return e
	}
	var best *jsonschema.ValidationError
	for _, c := range e.Causes {
		if c = mostSpecific(c); best == nil || specificity(c) > specificity(best) {
			best = c
		}
	}
	return best
}

func specificity(e *jsonschema.ValidationError) int {
	if _, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
		return len(e.InstanceLocation) + 1
	}
	return len(e.InstanceLocation)
}

// describe words a failure the way Compose does.
func describe(e *jsonschema.ValidationError) string {
	path := strings.Join(e.InstanceLocation, ".")
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		return fmt.Sprintf("%s must be a %s", path, typeNames(k.Want))
	case *kind.AdditionalProperties:
		if len(k.Properties) == 1 {
			if path == "" {
				return fmt.Sprintf("%s: not allowed at the top level", k.Properties[0])
			}
			return fmt.Sprintf("%s.%s: not allowed here", path, k.Properties[0])
		}
	case *kind.FalseSchema:
		return path + ": not allowed here"
	}
	msg := e.ErrorKind.LocalizedString(message.NewPrinter(language.English))
	if path == "" {
		return msg
	}
	return path + ": " + msg
}

func typeNames(want []string) string {
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = map[string]string{"object": "mapping", "array": "list"}[w]
		if names[i] == "" {
			names[i] = w
		}
	}
	slices.Sort(names)
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// index records the line of every value (and mapping key) under its path.
func index(n *yaml.Node, path []string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			index(c, path, lines)
		}
		return
	case yaml.AliasNode:
		return
	}
	key := strings.Join(path, "\x00")
	if _, ok := lines[key]; !ok {
		lines[key] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := append(slices.Clone(path), n.Content[i].Value)
			lines[strings.Join(p, "\x00")] = n.Content[i].Line
			index(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			index(c, append(slices.Clone(path), strconv.Itoa(i)), lines)
		}
	}
}

// lineOf is the line of the deepest part of path the document has.
func lineOf(lines map[string]int, path []string) int {
	for i := len(path); i >= 0; i-- {
		if l, ok := lines[strings.Join(path[:i], "\x00")]; ok && (i > 0 || l > 0) {
			return l
		}
	}
	return 0
}
