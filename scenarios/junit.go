package scenarios

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML, as CI systems render test results (GitLab's artifacts:reports:junit,
// GitHub actions that publish test reports, Jenkins): one testsuite per scenario
// played (a variant, NAME:VARIANT, is a scenario of its own), one testcase per
// expectation, in the story's order, with a failure that carries the expectation's
// message; the suite's system-out holds the run as `scenario run` prints it, the
// timeline included.
//
// The document keeps to what both common schemas require and allow: the Ant/
// Surefire one published as JUnit.xsd (windyroad; every testsuite has name,
// timestamp in UTC without a zone, hostname, tests, failures, errors, time, id and
// package, then properties, testcases, system-out and system-err, in that order,
// all present; a failure or error has message and type; the root testsuites has no
// attributes) and Jenkins' junit-10.xsd, which accepts every such document.
//
// A scenario that could not be played to its end (Report.Error) gets one more
// testcase, "the story plays to its end", with an error; one that was never played
// (an interrupted run) is a testsuite whose one testcase has an error saying so.

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       string          `xml:"time,attr"`
	ID         int             `xml:"id,attr"`
	Package    string          `xml:"package,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  junitText       `xml:"system-out"`
	SystemErr  junitText       `xml:"system-err"`
}

// junitText is a block of text kept as it is printed, in CDATA, its line breaks
// unescaped (xml's character data would write each as &#xA;); xmlText takes out
// what XML cannot hold.
type junitText struct {
	Text string `xml:",cdata"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"` // through xmlText
}

// JUnitPackage is the package attribute of every testsuite, and the prefix of every
// testcase's classname: idlegate.scenarios.NAME.
const JUnitPackage = "idlegate.scenarios"

// junitTimestamp is the timestamp form the schema's pattern takes: UTC, no zone.
const junitTimestamp = "2006-01-02T15:04:05"

// WriteJUnit writes r as a JUnit XML document (see above). hostname is the
// testsuites' hostname attribute, "localhost" when empty.
func (r *Results) WriteJUnit(w io.Writer, hostname string) error {
	if hostname == "" {
		hostname = "localhost"
	}
	doc := junitSuites{Suites: []junitSuite{}}
	played := map[string]bool{}
	for _, rep := range r.Reports {
		played[rep.Name] = true
		doc.Suites = append(doc.Suites, junitSuiteOf(rep, hostname, len(doc.Suites)))
	}
	for _, name := range r.NotRun {
		s := junitSuite{
			Name: name, Timestamp: r.Started.UTC().Format(junitTimestamp), Hostname: hostname, Tests: 1, Errors: 1,
			Time: "0.000", ID: len(doc.Suites), Package: JUnitPackage, Properties: []junitProperty{},
			Cases: []junitCase{{Name: "the story plays to its end", Classname: JUnitPackage + "." + name, Time: "0.000",
				Error: &junitProblem{Message: "not played: the run was interrupted", Type: "not-run"}}},
		}
		doc.Suites = append(doc.Suites, s)
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write JUnit XML: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

func junitSuiteOf(rep *Report, hostname string, id int) junitSuite {
	class := JUnitPackage + "." + rep.Name
	s := junitSuite{
		Name: rep.Name, Timestamp: rep.Started.UTC().Format(junitTimestamp), Hostname: hostname,
		Time: fmt.Sprintf("%.3f", rep.Duration), ID: id, Package: JUnitPackage,
		Properties: []junitProperty{{"title", rep.Title}, {"lab", rep.Lab}, {"policy", PolicySummary(rep.Profile, rep.Scale, rep.Policy)}},
		Cases:      []junitCase{},
	}
	if rep.File != "" {
		s.Properties = append(s.Properties, junitProperty{"file", rep.File})
	}
	for _, c := range rep.Checks {
		tc := junitCase{Name: c.Expect, Classname: class, Time: "0.000"}
		if !c.Pass {
			msg := c.Expect + ", got " + c.Got
			text := msg
			if c.Why != "" {
				text += "\n" + fmt.Sprintf("(line %d) the story says: %s", c.Line, c.Why)
			}
			tc.Failure = &junitProblem{Message: msg, Type: "expectation", Text: xmlText(text)}
			s.Failures++
		}
		s.Cases = append(s.Cases, tc)
	}
	if rep.Error != "" {
		s.Cases = append(s.Cases, junitCase{Name: "the story plays to its end", Classname: class, Time: fmt.Sprintf("%.3f", rep.Duration),
			Error: &junitProblem{Message: rep.Error, Type: "story", Text: xmlText(rep.Error)}})
		s.Errors++
	}
	s.Tests = len(s.Cases)
	var out strings.Builder
	rep.WriteText(&out)
	s.SystemOut = junitText{xmlText(out.String())}
	s.SystemErr = junitText{xmlText(strings.Join(rep.Warnings, "\n"))}
	return s
}

// xmlText replaces what XML 1.0 cannot hold (control characters other than tab
// and line breaks, such as a terminal escape a program printed, and invalid UTF-8)
// with U+FFFD, as encoding/xml does in character data.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
