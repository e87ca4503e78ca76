package junitcheck

import (
	"strings"
	"testing"
)

const valid = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="s" timestamp="2026-12-03T12:12:12" hostname="h" tests="2" failures="1" errors="0" time="1.500" id="0" package="p">
    <properties><property name="k" value="v"/></properties>
    <testcase name="a" classname="p.s" time="0"/>
    <testcase name="b" classname="p.s" time="0.000"><failure message="m" type="expectation">text</failure></testcase>
    <system-out><![CDATA[out]]></system-out>
    <system-err></system-err>
  </testsuite>
</testsuites>`

func TestCheck(t *testing.T) {
	suites, err := Check([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if len(suites) != 1 || len(suites[0].Cases) != 2 || suites[0].Cases[1].Failure != "m" || suites[0].SystemOut != "out" || suites[0].Properties["k"] != "v" {
		t.Fatalf("read %+v", suites)
	}
	// Each mutation breaks one requirement of the schema.
	for _, tc := range []struct{ name, from, to, err string }{
		{"root", "<testsuites>", "<testsuites tests=\"2\">", "the schema allows none"},
		{"timestamp zone", `2026-12-03T12:12:12"`, `2026-12-03T12:12:12Z"`, "is not YYYY-MM-DDTHH:MM:SS"},
		{"no hostname", ` hostname="h"`, "", "no hostname attribute"},
		{"no id", ` id="0"`, "", "no id attribute"},
		{"no package", ` package="p"`, "", "no package attribute"},
		{"time", `time="1.500"`, `time="1.5s"`, "is not a decimal"},
		{"count", `tests="2"`, `tests="3"`, "but it holds 2 testcases"},
		{"failures", `failures="1"`, `failures="0"`, "but it holds 2 testcases, 1 failures"},
		{"no system-err", "<system-err></system-err>", "", "want properties, testcase..., system-out, system-err"},
		{"no properties", `<properties><property name="k" value="v"/></properties>`, "", "want properties, testcase..., system-out, system-err"},
		{"order", "<system-out><![CDATA[out]]></system-out>\n    <system-err></system-err>", "<system-err></system-err><system-out></system-out>", "want properties"},
		{"failure type", `type="expectation"`, "", "no type attribute"},
		{"testcase classname", `classname="p.s" time="0"/>`, `time="0"/>`, "no classname attribute"},
		{"unknown attribute", `<testcase name="a"`, `<testcase line="3" name="a"`, "attribute line is not in the schema"},
		{"two problems", `text</failure>`, `text</failure><error type="x"/>`, "allows one skipped, error or failure"},
		{"not xml", "</testsuites>", "", "not well-formed"},
	} {
		doc := strings.Replace(valid, tc.from, tc.to, 1)
		if doc == valid {
			t.Fatalf("%s: the mutation changed nothing", tc.name)
		}
		if _, err := Check([]byte(doc)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.err)
		}
	}
}
