// Command gotemplate is the test oracle for mfc's template engine: Go's own
// text/template with Ollama's function map and options, fed JSON lines on stdin.
//
// Request:  {"id": 1, "mode": "exec"|"prompt", "template": "...", "data": {...}}
// Response: {"id": 1, "ok": true, "output": "<base64>"} or {"id": 1, "ok": false, "error": "..."}
//
// "exec" parses with New("").Option("missingkey=zero").Funcs(ollamaFuncs) and executes
// on the JSON data (objects as map[string]any, arrays as []any, numbers as float64);
// "exec:default" and "exec:error" do the same with Go's other missingkey options.
// "tag" prints the template's tool-call tag (tooltag.go).
// "prompt" follows Ollama's template.Parse + Template.Execute: the data is
// {"messages": [...], "tools": [...], "prompt": "", "suffix": "", "think": bool|"level"|null}.
// The prompt-path types below are written for this oracle from the reference's
// documented behaviour (spec §2.3-§2.6).
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

type request struct {
	ID       int             `json:"id"`
	Mode     string          `json:"mode"`
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data"`
}

type response struct {
	ID     int    `json:"id"`
	OK     bool   `json:"ok"`
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate": func(args ...string) string {
		return time.Now().Format("2006-01-02")
	},
	"yesterdayDate": func(args ...string) string {
		return time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	},
	"toTypeScriptType": func(v any) string {
		if p, ok := v.(ToolProperty); ok {
			return p.ToTypeScriptType()
		}
		if p, ok := v.(*ToolProperty); ok && p != nil {
			return p.ToTypeScriptType()
		}
		return "any"
	},
}

// exactCap copies every slice so that cap == len, as the Python model assumes.
func exactCap(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = exactCap(e)
		}
		return out
	case map[string]any:
		for k, e := range x {
			x[k] = exactCap(e)
		}
		return x
	}
	return v
}

func runExec(src string, raw json.RawMessage, missingkey string) (string, error) {
	var data any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &data); err != nil {
			return "", err
		}
	}
	t, err := template.New("").Option("missingkey=" + missingkey).Funcs(funcs).Parse(src)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = t.Execute(&b, exactCap(data))
	return b.String(), err
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request:", err)
			os.Exit(2)
		}
		var text string
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			switch req.Mode {
			case "prompt":
				text, err = runPrompt(req.Template, req.Data)
			case "exec:default":
				text, err = runExec(req.Template, req.Data, "default")
			case "exec:error":
				text, err = runExec(req.Template, req.Data, "error")
			case "tag":
				text, err = toolCallTag(req.Template)
			default:
				text, err = runExec(req.Template, req.Data, "zero")
			}
		}()
		resp := response{ID: req.ID, OK: err == nil}
		if err != nil {
			resp.Error = err.Error()
		} else {
			resp.Output = base64.StdEncoding.EncodeToString([]byte(text))
		}
		_ = enc.Encode(resp)
		out.Flush()
	}
}

// ---- the prompt path ---------------------------------------------------------

type promptRequest struct {
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools"`
	Prompt   string    `json:"prompt"`
	Suffix   string    `json:"suffix"`
	Think    any       `json:"think"`
}

type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking,omitempty"`
	Images     [][]byte   `json:"images,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolName   string     `json:"tool_name,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type ToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int            `json:"index"`
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"function"`
}

type Tool struct {
	Type     string `json:"type"`
	Items    any    `json:"items,omitempty"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
		Parameters  struct {
			Type       string             `json:"type"`
			Defs       any                `json:"$defs,omitempty"`
			Items      any                `json:"items,omitempty"`
			Required   []string           `json:"required,omitempty"`
			Properties *ToolPropertiesMap `json:"properties"`
		} `json:"parameters"`
	} `json:"function"`
}

type PropertyType []string

func (pt *PropertyType) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*pt = []string{s}
		return nil
	}
	var a []string
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	*pt = a
	return nil
}

func (pt PropertyType) MarshalJSON() ([]byte, error) {
	if len(pt) == 1 {
		return json.Marshal(pt[0])
	}
	return json.Marshal([]string(pt))
}

func (pt PropertyType) String() string {
	switch len(pt) {
	case 0:
		return ""
	case 1:
		return pt[0]
	}
	return fmt.Sprintf("%v", []string(pt))
}

// ToolPropertiesMap keeps the insertion order of its keys in JSON.
type ToolPropertiesMap struct {
	keys []string
	vals map[string]ToolProperty
}

func (m *ToolPropertiesMap) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("properties: expected object")
	}
	m.vals = map[string]ToolProperty{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		var p ToolProperty
		if err := dec.Decode(&p); err != nil {
			return err
		}
		if _, seen := m.vals[key]; !seen {
			m.keys = append(m.keys, key)
		}
		m.vals[key] = p
	}
	return nil
}

func (m ToolPropertiesMap) MarshalJSON() ([]byte, error) {
	if m.vals == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(m.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type ToolProperty struct {
	AnyOf       []ToolProperty     `json:"anyOf,omitempty"`
	Type        PropertyType       `json:"type,omitempty"`
	Items       any                `json:"items,omitempty"`
	Description string             `json:"description,omitempty"`
	Enum        []any              `json:"enum,omitempty"`
	Properties  *ToolPropertiesMap `json:"properties,omitempty"`
	Required    []string           `json:"required,omitempty"`
}

func (tp ToolProperty) ToTypeScriptType() string {
	if len(tp.AnyOf) > 0 {
		var parts []string
		for _, a := range tp.AnyOf {
			parts = append(parts, a.ToTypeScriptType())
		}
		return strings.Join(parts, " | ")
	}
	if len(tp.Type) == 0 {
		return "any"
	}
	var parts []string
	for _, t := range tp.Type {
		switch t {
		case "string":
			parts = append(parts, "string")
		case "number", "integer":
			parts = append(parts, "number")
		case "boolean":
			parts = append(parts, "boolean")
		case "array":
			parts = append(parts, "any[]")
		case "object":
			parts = append(parts, "Record<string, any>")
		case "null":
			parts = append(parts, "null")
		default:
			parts = append(parts, "any")
		}
	}
	return strings.Join(parts, " | ")
}

// The template-facing copies (what `.Messages` and `.Tools` hold).
type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     [][]byte
	ToolCalls  []templateToolCall
	ToolName   string
	ToolCallID string
}

type templateToolCall struct {
	ID       string
	Function templateToolCallFunction
}

type templateToolCallFunction struct {
	Index     int
	Name      string
	Arguments templateArgs
}

type templateArgs map[string]any

func (t templateArgs) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

type templateProperties map[string]ToolProperty

func (t templateProperties) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

type templateTools []templateTool

func (t templateTools) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type templateTool struct {
	Type     string               `json:"type"`
	Items    any                  `json:"items,omitempty"`
	Function templateToolFunction `json:"function"`
}

func (t templateTool) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type templateToolFunction struct {
	Name        string                         `json:"name"`
	Description string                         `json:"description"`
	Parameters  templateToolFunctionParameters `json:"parameters"`
}

type templateToolFunctionParameters struct {
	Type       string             `json:"type"`
	Defs       any                `json:"$defs,omitempty"`
	Items      any                `json:"items,omitempty"`
	Required   []string           `json:"required,omitempty"`
	Properties templateProperties `json:"properties"`
}

var responseNode = parse.ActionNode{NodeType: parse.NodeAction, Pipe: &parse.PipeNode{
	NodeType: parse.NodePipe,
	Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand,
		Args: []parse.Node{&parse.FieldNode{NodeType: parse.NodeField, Ident: []string{"Response"}}}}},
}}

func identifiers(n parse.Node) ([]string, error) {
	var out []string
	var walkList = func(l *parse.ListNode) error {
		if l == nil {
			return nil
		}
		for _, c := range l.Nodes {
			ids, err := identifiers(c)
			if err != nil {
				return err
			}
			out = append(out, ids...)
		}
		return nil
	}
	switch n := n.(type) {
	case *parse.ListNode:
		return out, walkList(n)
	case *parse.TemplateNode:
		if n.Pipe == nil {
			return nil, errors.New("undefined template specified")
		}
		return identifiers(n.Pipe)
	case *parse.ActionNode:
		return identifiers(n.Pipe)
	case *parse.IfNode, *parse.RangeNode, *parse.WithNode:
		var b *parse.BranchNode
		switch x := n.(type) {
		case *parse.IfNode:
			b = &x.BranchNode
		case *parse.RangeNode:
			b = &x.BranchNode
		case *parse.WithNode:
			b = &x.BranchNode
		}
		ids, err := identifiers(b.Pipe)
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
		if err := walkList(b.List); err != nil {
			return nil, err
		}
		return out, walkList(b.ElseList)
	case *parse.PipeNode:
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				ids, err := identifiers(a)
				if err != nil {
					return nil, err
				}
				out = append(out, ids...)
			}
		}
		return out, nil
	case *parse.FieldNode:
		return n.Ident, nil
	case *parse.VariableNode:
		return n.Ident, nil
	}
	return nil, nil
}

func vars(t *template.Template) ([]string, error) {
	set := map[string]bool{}
	for _, tt := range t.Templates() {
		for _, n := range tt.Root.Nodes {
			ids, err := identifiers(n)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				set[strings.ToLower(id)] = true
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// cutAfterResponse removes everything after the first .Response field, as the
// reference's legacy path does before its last execution.
func cutAfterResponse(root *parse.ListNode) *parse.ListNode {
	cut := false
	pred := func(n parse.Node) bool {
		if f, ok := n.(*parse.FieldNode); ok && slices.Contains(f.Ident, "Response") {
			cut = true
			return false
		}
		return cut
	}
	var walk func(n parse.Node) parse.Node
	walk = func(n parse.Node) parse.Node {
		if pred(n) {
			return nil
		}
		switch t := n.(type) {
		case *parse.ListNode:
			var kept []parse.Node
			for _, c := range t.Nodes {
				if k := walk(c); k != nil {
					kept = append(kept, k)
				}
			}
			t.Nodes = kept
			return t
		case *parse.IfNode:
			t.BranchNode = *walk(&t.BranchNode).(*parse.BranchNode)
		case *parse.WithNode:
			t.BranchNode = *walk(&t.BranchNode).(*parse.BranchNode)
		case *parse.RangeNode:
			t.BranchNode = *walk(&t.BranchNode).(*parse.BranchNode)
		case *parse.BranchNode:
			t.List = walk(t.List).(*parse.ListNode)
			if t.ElseList != nil {
				t.ElseList = walk(t.ElseList).(*parse.ListNode)
			}
		case *parse.ActionNode:
			p := walk(t.Pipe)
			if p == nil {
				return nil
			}
			t.Pipe = p.(*parse.PipeNode)
		case *parse.PipeNode:
			var cmds []*parse.CommandNode
			for _, c := range t.Cmds {
				var args []parse.Node
				for _, a := range c.Args {
					if k := walk(a); k != nil {
						args = append(args, k)
					}
				}
				if len(args) == 0 {
					return nil
				}
				c.Args = args
				cmds = append(cmds, c)
			}
			if len(cmds) == 0 {
				return nil
			}
			t.Cmds = cmds
		}
		return n
	}
	return walk(root).(*parse.ListNode)
}

func runPrompt(src string, raw json.RawMessage) (string, error) {
	var req promptRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return "", err
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return "", err
	}
	vs, err := vars(tmpl)
	if err != nil {
		return "", err
	}
	if !slices.Contains(vs, "messages") && !slices.Contains(vs, "response") {
		tmpl.Tree.Root.Nodes = append(tmpl.Tree.Root.Nodes, &responseNode)
	}
	vs, err = vars(tmpl)
	if err != nil {
		return "", err
	}
	think, thinkLevel, isThinkSet := false, "", req.Think != nil
	switch v := req.Think.(type) {
	case bool:
		think = v
	case string:
		think, thinkLevel = true, v
	}
	// collate
	var system []string
	var msgs []*Message
	for i := range req.Messages {
		m := &req.Messages[i]
		m.Role = strings.ToLower(m.Role)
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(msgs) > 0 && msgs[len(msgs)-1].Role == m.Role && m.Role != "tool" {
			msgs[len(msgs)-1].Content += "\n\n" + m.Content
		} else {
			msgs = append(msgs, m)
		}
	}
	common := func(d map[string]any) map[string]any {
		d["Think"], d["ThinkLevel"], d["IsThinkSet"] = think, thinkLevel, isThinkSet
		return d
	}
	var b bytes.Buffer
	if req.Prompt != "" && req.Suffix != "" {
		err := tmpl.Execute(&b, common(map[string]any{"Prompt": req.Prompt, "Suffix": req.Suffix, "Response": ""}))
		return b.String(), err
	}
	if slices.Contains(vs, "messages") {
		err := tmpl.Execute(&b, common(map[string]any{
			"System": strings.Join(system, "\n\n"), "Messages": templateMessages(msgs),
			"Tools": templateToolsOf(req.Tools), "Response": "",
		}))
		return b.String(), err
	}
	var sys, prompt, resp string
	flush := func() error {
		err := tmpl.Execute(&b, common(map[string]any{"System": sys, "Prompt": prompt, "Response": resp}))
		sys, prompt, resp = "", "", ""
		return err
	}
	for _, m := range msgs {
		switch m.Role {
		case "system":
			if prompt != "" || resp != "" {
				if err := flush(); err != nil {
					return "", err
				}
			}
			sys = m.Content
		case "user":
			if resp != "" {
				if err := flush(); err != nil {
					return "", err
				}
			}
			prompt = m.Content
		case "assistant":
			resp = m.Content
		}
	}
	tree := parse.Tree{Root: cutAfterResponse(tmpl.Root.Copy().(*parse.ListNode))}
	last := template.Must(template.New("").AddParseTree("", &tree))
	if err := last.Execute(&b, common(map[string]any{"System": sys, "Prompt": prompt, "Response": resp})); err != nil {
		return "", err
	}
	return b.String(), nil
}

func templateMessages(msgs []*Message) []*templateMessage {
	if msgs == nil {
		return nil
	}
	out := make([]*templateMessage, len(msgs))
	for i, m := range msgs {
		var calls []templateToolCall
		for _, tc := range m.ToolCalls {
			calls = append(calls, templateToolCall{ID: tc.ID, Function: templateToolCallFunction{
				Index: tc.Function.Index, Name: tc.Function.Name, Arguments: templateArgs(tc.Function.Arguments)}})
		}
		out[i] = &templateMessage{Role: m.Role, Content: m.Content, Thinking: m.Thinking, Images: m.Images,
			ToolCalls: calls, ToolName: m.ToolName, ToolCallID: m.ToolCallID}
	}
	return out
}

func templateToolsOf(tools []Tool) templateTools {
	if tools == nil {
		return nil
	}
	out := make(templateTools, len(tools))
	for i, t := range tools {
		var props templateProperties
		if p := t.Function.Parameters.Properties; p != nil && p.vals != nil {
			props = templateProperties(p.vals)
		}
		out[i] = templateTool{Type: t.Type, Items: t.Items, Function: templateToolFunction{
			Name: t.Function.Name, Description: t.Function.Description,
			Parameters: templateToolFunctionParameters{Type: t.Function.Parameters.Type,
				Defs: t.Function.Parameters.Defs, Items: t.Function.Parameters.Items,
				Required: t.Function.Parameters.Required, Properties: props}}}
	}
	return out
}
