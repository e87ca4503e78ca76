// Package junitcheck checks a JUnit XML document against what the common JUnit XML
// schema requires: the Ant/Surefire format as JUnit.xsd (windyroad/JUnit-Schema)
// defines it, the one CI systems' readers (GitLab, Jenkins, the GitHub actions that
// publish test reports) accept. It is for tests: a reader that would refuse the
// document, or misread its counts, fails the check with the path of the first
// offending element.
package junitcheck

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Element is one XML element: its name, attributes, child elements and text.
type Element struct {
	Name     string
	Attrs    map[string]string
	Children []*Element
	Text     string
}

// Suite is a testsuite as the check read it.
type Suite struct {
	Name       string
	Properties map[string]string
	Cases      []Case
	SystemOut  string
	SystemErr  string
}

// Case is a testcase: Failure or Error holds its message ("" for none), Type its type.
type Case struct {
	Name, Classname string
	Failure, Error  string
	Type, Text      string
}

// Parse reads a document into its element tree.
func Parse(b []byte) (*Element, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	var stack []*Element
	var root *Element
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e := &Element{Name: t.Name.Local, Attrs: map[string]string{}}
			for _, a := range t.Attr {
				e.Attrs[a.Name.Local] = a.Value
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, e)
			} else if root != nil {
				return nil, fmt.Errorf("a second root element <%s>", e.Name)
			} else {
				root = e
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(t)
			} else if strings.TrimSpace(string(t)) != "" {
				return nil, fmt.Errorf("text outside the root element")
			}
		}
	}
	if root == nil {
		return nil, fmt.Errorf("no root element")
	}
	return root, nil
}

var (
	timestamp = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$`)
	decimal   = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)
)

// Check reads b, a <testsuites> document, and returns its suites, or the first
// thing the schema refuses: an element out of place or order, a required attribute
// missing or of the wrong form, counts that disagree with the testcases.
func Check(b []byte) ([]Suite, error) {
	root, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if root.Name != "testsuites" {
		return nil, fmt.Errorf("the root element is <%s>, want <testsuites>", root.Name)
	}
	if len(root.Attrs) > 0 {
		return nil, fmt.Errorf("<testsuites> has attributes %v; the schema allows none", keys(root.Attrs))
	}
	var suites []Suite
	for i, s := range root.Children {
		path := fmt.Sprintf("testsuites/testsuite[%d]", i)
		if s.Name != "testsuite" {
			return nil, fmt.Errorf("%s is <%s>, want <testsuite>", path, s.Name)
		}
		suite, err := checkSuite(s, path, i)
		if err != nil {
			return nil, err
		}
		suites = append(suites, suite)
	}
	return suites, nil
}

func checkSuite(s *Element, path string, index int) (Suite, error) {
	allowed := map[string]bool{"name": true, "timestamp": true, "hostname": true, "tests": true, "failures": true,
		"errors": true, "skipped": true, "time": true, "package": true, "id": true}
	if err := attrs(s, path, allowed, "name", "timestamp", "hostname", "tests", "failures", "errors", "time", "package", "id"); err != nil {
		return Suite{}, err
	}
	for _, a := range []string{"name", "hostname"} {
		if strings.TrimSpace(s.Attrs[a]) == "" {
			return Suite{}, fmt.Errorf("%s: %s is empty", path, a)
		}
	}
	if !timestamp.MatchString(s.Attrs["timestamp"]) {
		return Suite{}, fmt.Errorf("%s: timestamp %q is not YYYY-MM-DDTHH:MM:SS (no zone)", path, s.Attrs["timestamp"])
	}
	if !decimal.MatchString(s.Attrs["time"]) {
		return Suite{}, fmt.Errorf("%s: time %q is not a decimal", path, s.Attrs["time"])
	}
	n := map[string]int{}
	for _, a := range []string{"tests", "failures", "errors", "id", "skipped"} {
		if v, ok := s.Attrs[a]; ok {
			i, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return Suite{}, fmt.Errorf("%s: %s %q is not an int", path, a, v)
			}
			n[a] = int(i)
		}
	}
	if n["id"] != index {
		return Suite{}, fmt.Errorf("%s: id %d, want %d (from 0, one more per testsuite)", path, n["id"], index)
	}
	// The sequence: properties, testcase*, system-out, system-err.
	kids := s.Children
	if len(kids) < 3 || kids[0].Name != "properties" || kids[len(kids)-2].Name != "system-out" || kids[len(kids)-1].Name != "system-err" {
		return Suite{}, fmt.Errorf("%s: children %v, want properties, testcase..., system-out, system-err", path, names(kids))
	}
	suite := Suite{Name: s.Attrs["name"], Properties: map[string]string{}, SystemOut: kids[len(kids)-2].Text, SystemErr: kids[len(kids)-1].Text}
	for _, e := range kids[len(kids)-2:] {
		if len(e.Children) > 0 || len(e.Attrs) > 0 {
			return Suite{}, fmt.Errorf("%s/%s has elements or attributes; want text only", path, e.Name)
		}
	}
	for j, p := range kids[0].Children {
		pp := fmt.Sprintf("%s/properties/property[%d]", path, j)
		if p.Name != "property" {
			return Suite{}, fmt.Errorf("%s is <%s>, want <property>", pp, p.Name)
		}
		if err := attrs(p, pp, map[string]bool{"name": true, "value": true}, "name", "value"); err != nil {
			return Suite{}, err
		}
		if strings.TrimSpace(p.Attrs["name"]) == "" {
			return Suite{}, fmt.Errorf("%s: name is empty", pp)
		}
		suite.Properties[p.Attrs["name"]] = p.Attrs["value"]
	}
	failures, errors, skipped := 0, 0, 0
	for j, c := range kids[1 : len(kids)-2] {
		cp := fmt.Sprintf("%s/testcase[%d]", path, j)
		if c.Name != "testcase" {
			return Suite{}, fmt.Errorf("%s is <%s>, want <testcase> (children %v)", cp, c.Name, names(kids))
		}
		if err := attrs(c, cp, map[string]bool{"name": true, "classname": true, "time": true}, "name", "classname", "time"); err != nil {
			return Suite{}, err
		}
		if !decimal.MatchString(c.Attrs["time"]) {
			return Suite{}, fmt.Errorf("%s: time %q is not a decimal", cp, c.Attrs["time"])
		}
		tc := Case{Name: c.Attrs["name"], Classname: c.Attrs["classname"]}
		if len(c.Children) > 1 {
			return Suite{}, fmt.Errorf("%s: children %v; the schema allows one skipped, error or failure", cp, names(c.Children))
		}
		for _, p := range c.Children {
			switch p.Name {
			case "failure", "error":
				if err := attrs(p, cp+"/"+p.Name, map[string]bool{"message": true, "type": true}, "type"); err != nil {
					return Suite{}, err
				}
				if len(p.Children) > 0 {
					return Suite{}, fmt.Errorf("%s/%s has elements; want text only", cp, p.Name)
				}
				tc.Type, tc.Text = p.Attrs["type"], p.Text
				if p.Name == "failure" {
					tc.Failure = p.Attrs["message"]
					failures++
				} else {
					tc.Error = p.Attrs["message"]
					errors++
				}
			case "skipped":
				skipped++
			default:
				return Suite{}, fmt.Errorf("%s has <%s>; the schema allows skipped, error or failure", cp, p.Name)
			}
		}
		suite.Cases = append(suite.Cases, tc)
	}
	if n["tests"] != len(suite.Cases) || n["failures"] != failures || n["errors"] != errors {
		return Suite{}, fmt.Errorf("%s: tests=%d failures=%d errors=%d, but it holds %d testcases, %d failures, %d errors",
			path, n["tests"], n["failures"], n["errors"], len(suite.Cases), failures, errors)
	}
	if _, ok := s.Attrs["skipped"]; ok && n["skipped"] != skipped {
		return Suite{}, fmt.Errorf("%s: skipped=%d, but it holds %d skipped", path, n["skipped"], skipped)
	}
	return suite, nil
}

// attrs checks that e has every attribute of required and none outside allowed.
func attrs(e *Element, path string, allowed map[string]bool, required ...string) error {
	for _, a := range required {
		if _, ok := e.Attrs[a]; !ok {
			return fmt.Errorf("%s: no %s attribute (required)", path, a)
		}
	}
	for a := range e.Attrs {
		if !allowed[a] {
			return fmt.Errorf("%s: attribute %s is not in the schema", path, a)
		}
	}
	return nil
}

func names(es []*Element) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
