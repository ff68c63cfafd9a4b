package main

// The "tag" mode: the tool-call tag read from Go's own parse tree, as the reference's
// tools package describes it: the first if/else-if whose pipeline has a field argument
// naming ToolCalls (searched through if/range/with bodies and else branches), then the
// first non-blank text below it, depth first, where an action or a nested block without
// text ends the search; CRLF folded to LF, cut before "{", trimmed; "{" when none.

import (
	"bytes"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

func toolCallTag(src string) (string, error) {
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return "", err
	}
	if t.Tree == nil || t.Tree.Root == nil {
		return "{", nil
	}
	branch := toolCallsBranch(t.Tree.Root.Nodes)
	if branch == nil {
		return "{", nil
	}
	text := firstText(branch.List.Nodes)
	if text == nil {
		return "{", nil
	}
	tag := strings.ReplaceAll(string(text.Text), "\r\n", "\n")
	tag, _, _ = strings.Cut(tag, "{")
	if tag = strings.TrimSpace(tag); tag == "" {
		return "{", nil
	}
	return tag, nil
}

func testsToolCalls(n *parse.IfNode) bool {
	for _, cmd := range n.Pipe.Cmds {
		for _, arg := range cmd.Args {
			if f, ok := arg.(*parse.FieldNode); ok && slices.Contains(f.Ident, "ToolCalls") {
				return true
			}
		}
	}
	return false
}

func branchOf(n parse.Node) *parse.BranchNode {
	switch b := n.(type) {
	case *parse.IfNode:
		return &b.BranchNode
	case *parse.RangeNode:
		return &b.BranchNode
	case *parse.WithNode:
		return &b.BranchNode
	}
	return nil
}

func bodiesOf(b *parse.BranchNode) []*parse.ListNode {
	if b.ElseList == nil {
		return []*parse.ListNode{b.List}
	}
	return []*parse.ListNode{b.List, b.ElseList}
}

func toolCallsBranch(nodes []parse.Node) *parse.IfNode {
	for _, n := range nodes {
		if i, ok := n.(*parse.IfNode); ok && testsToolCalls(i) {
			return i
		}
		if b := branchOf(n); b != nil {
			for _, l := range bodiesOf(b) {
				if found := toolCallsBranch(l.Nodes); found != nil {
					return found
				}
			}
		} else if l, ok := n.(*parse.ListNode); ok {
			if found := toolCallsBranch(l.Nodes); found != nil {
				return found
			}
		}
	}
	return nil
}

func firstText(nodes []parse.Node) *parse.TextNode {
	for _, n := range nodes {
		switch x := n.(type) {
		case *parse.TextNode:
			if len(bytes.TrimSpace(x.Text)) > 0 {
				return x
			}
		case *parse.ActionNode:
			return nil
		case *parse.ListNode:
			if t := firstText(x.Nodes); t != nil {
				return t
			}
		default:
			if b := branchOf(n); b != nil {
				for _, l := range bodiesOf(b) {
					if t := firstText(l.Nodes); t != nil {
						return t
					}
				}
				return nil
			}
		}
	}
	return nil
}
