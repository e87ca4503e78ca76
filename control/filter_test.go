package control

import (
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// entry is a live connection with the given tuples, state and reply packets (replied
// once there is one, as the table sets IPS_SEEN_REPLY).
func entry(id uint64, orig, reply conntrack.Key, st conntrack.TCPState, assured bool, replies uint64) *conntrack.EntryInfo {
	return &conntrack.EntryInfo{Entry: conntrack.Entry{ID: id, Orig: orig, Reply: reply, Proto: orig.Proto, State: st,
		Assured: assured, Replied: replies > 0, Packets: [2]uint64{3, replies}}, TimeLeft: time.Second}
}

var (
	tcpKey  = conntrack.MakeKey(conntrack.ProtoTCP, ap("198.18.0.2:40000"), ap("198.19.0.2:5432"))
	udpKey  = conntrack.MakeKey(conntrack.ProtoUDP, ap("198.18.0.2:5353"), ap("198.19.0.2:53"))
	icmpKey = conntrack.MakeKey(conntrack.ProtoICMP, ap("198.18.0.2:7"), ap("198.19.0.2:7"))
	tcp6Key = conntrack.MakeKey(conntrack.ProtoTCP, ap("[fd00:18::2]:40001"), ap("[fd00:19::2]:80"))
	// natReply is tcpKey's reply tuple under source NAT to 198.19.0.1:20000.
	natReply = conntrack.MakeKey(conntrack.ProtoTCP, ap("198.19.0.2:5432"), ap("198.19.0.1:20000"))

	established = entry(1, tcpKey, tcpKey.Reply(), conntrack.TCPEstablished, true, 2)
	natted      = entry(2, tcpKey, natReply, conntrack.TCPSynSent, false, 0)
	dns         = entry(3, udpKey, udpKey.Reply(), conntrack.TCPNone, false, 0)
	ping        = entry(4, icmpKey, icmpKey.Reply(), conntrack.TCPNone, true, 1)
	web6        = entry(5, tcp6Key, tcp6Key.Reply(), conntrack.TCPTimeWait, true, 4)
	all         = []*conntrack.EntryInfo{established, natted, dns, ping, web6}
)

// TestFilterMatch: each filter, as the CLI writes it, picks exactly the connections
// it names.
func TestFilterMatch(t *testing.T) {
	cases := []struct {
		name string
		set  [][2]string
		want []uint64
	}{
		{"nothing set", nil, []uint64{1, 2, 3, 4, 5}},
		{"proto tcp", [][2]string{{"proto", "tcp"}}, []uint64{1, 2, 5}},
		{"proto by number", [][2]string{{"proto", "17"}}, []uint64{3}},
		{"proto icmp", [][2]string{{"proto", "ICMP"}}, []uint64{4}},
		{"src address", [][2]string{{"src", "198.18.0.2"}}, []uint64{1, 2, 3, 4}},
		{"src v6 prefix", [][2]string{{"src", "fd00:18::/64"}}, []uint64{5}},
		{"dst prefix", [][2]string{{"dst", "198.19.0.0/24"}}, []uint64{1, 2, 3, 4}},
		{"dst masked", [][2]string{{"dst", "198.19.0.77/16"}}, []uint64{1, 2, 3, 4}},
		{"dport", [][2]string{{"dport", "5432"}}, []uint64{1, 2}},
		{"sport", [][2]string{{"sport", "5353"}}, []uint64{3}},
		{"a port leaves ICMP out", [][2]string{{"sport", "7"}}, nil},
		{"state", [][2]string{{"state", "ESTABLISHED"}}, []uint64{1}},
		{"states, lower case", [][2]string{{"state", "established,time_wait"}}, []uint64{1, 5}},
		{"states accumulate", [][2]string{{"state", "SYN_SENT"}, {"state", "TIME_WAIT"}}, []uint64{2, 5}},
		{"assured", [][2]string{{"status", "ASSURED"}}, []uint64{1, 4, 5}},
		{"unreplied", [][2]string{{"status", "unreplied"}}, []uint64{2, 3}},
		{"nat", [][2]string{{"nat", ""}}, []uint64{2}},
		{"no nat", [][2]string{{"nat", "false"}}, []uint64{1, 3, 4, 5}},
		{"id", [][2]string{{"id", "4"}}, []uint64{4}},
		{"all together", [][2]string{{"proto", "tcp"}, {"src", "198.18.0.2"}, {"dport", "5432"}, {"status", "ASSURED"}}, []uint64{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f Filter
			for _, kv := range c.set {
				if err := f.Set(kv[0], kv[1]); err != nil {
					t.Fatalf("Set(%s, %q): %v", kv[0], kv[1], err)
				}
			}
			if err := f.Check(); err != nil {
				t.Fatalf("Check: %v", err)
			}
			var got []uint64
			m := f.Match()
			if (m == nil) != (c.set == nil) {
				t.Errorf("Match() nil = %v, want nil only for the zero filter", m == nil)
			}
			for _, e := range all {
				if f.MatchEntry(e) {
					got = append(got, e.ID)
				}
				if m != nil && m(e) != f.MatchEntry(e) {
					t.Errorf("Match() and MatchEntry disagree on %d", e.ID)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s picks %v, want %v", f, got, c.want)
			}
			// The query parameters read back to the same filter.
			back, err := ParseFilter(f.Query())
			if err != nil {
				t.Fatalf("ParseFilter(%v): %v", f.Query(), err)
			}
			if !reflect.DeepEqual(back, f) {
				t.Errorf("query %v reads back as %+v, want %+v", f.Query().Encode(), back, f)
			}
		})
	}
}

// TestFilterErrors: a bad value is one sentence naming what would do; a
// contradictory filter is refused; an unknown query parameter names the known ones.
func TestFilterErrors(t *testing.T) {
	for _, c := range []struct{ key, value, want string }{
		{"proto", "tpc", `"tpc" is not a protocol: give tcp, udp, icmp, icmpv6 or a number from 1 to 255`},
		{"dport", "http", `"http" is not a port number from 1 to 65535`},
		{"sport", "0", `"0" is not a port number`},
		{"src", "198.18.0.300", `"198.18.0.300" is not an address or a prefix`},
		{"state", "ESTABLISH", `"ESTABLISH" is not a TCP state: give one or more of SYN_SENT,SYN_RECV,ESTABLISHED`},
		{"state", "NONE", `"NONE" is not a TCP state`},
		{"status", "SEEN_REPLY", `"SEEN_REPLY" is not a status: give ASSURED or UNREPLIED`},
		{"nat", "maybe", `"maybe" is not true or false`},
		{"event", "EXPIRE", `"EXPIRE" is not an event type: give one or more of NEW,UPDATE,DESTROY,VERDICT (or ALL)`},
		{"id", "-1", `"-1" is not a connection id`},
		{"port", "80", `unknown filter "port": the filters are id, proto, src, dst, sport, dport, state, status, nat, event`},
	} {
		var f Filter
		err := f.Set(c.key, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Set(%s, %q) = %v, want %q", c.key, c.value, err, c.want)
		}
	}
	for _, c := range []struct {
		q    string
		want string
	}{
		{"proto=udp&state=ESTABLISHED", "a state picks TCP connections, and the protocol is udp"},
		{"proto=icmp&dport=80", "a port picks TCP and UDP connections, and the protocol is icmp"},
		{"status=ASSURED,UNREPLIED", "no connection is both ASSURED and UNREPLIED"},
		{"src=198.18.0.2&dst=fd00:19::2", "different IP families"},
		{"port=80", `unknown query parameter "port"`},
		{"dport=http", `dport=http: "http" is not a port number`},
	} {
		q, _ := url.ParseQuery(c.q)
		if _, err := ParseFilter(q); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseFilter(%s) = %v, want %q", c.q, err, c.want)
		}
	}
	q, _ := url.ParseQuery("dport=80&verdicts=1")
	if _, err := ParseFilter(q, "verdicts"); err != nil {
		t.Errorf("an allowed extra parameter is refused: %v", err)
	}
}

// TestFilterEvents: event types default to NEW, UPDATE and DESTROY; VERDICT events
// match on the tuple alone; the connection fields pick the events of their
// connections.
func TestFilterEvents(t *testing.T) {
	ev := func(typ conntrack.EventType, e *conntrack.EntryInfo) *policy.Event {
		ce := e.Event(typ, time.Time{})
		return &policy.Event{Event: ce}
	}
	verdict := &policy.Event{Event: conntrack.Event{Type: conntrack.EventVerdict, ID: 1, Orig: tcpKey, Reply: tcpKey.Reply(), Proto: conntrack.ProtoTCP}}
	var f Filter
	if !f.MatchEvent(ev(conntrack.EventNew, dns)) || !f.MatchEvent(ev(conntrack.EventDestroy, dns)) || f.MatchEvent(verdict) {
		t.Error("the zero filter must pick NEW, UPDATE and DESTROY, not VERDICT")
	}
	f.Set("event", "VERDICT")
	if !f.WantsVerdicts() || !f.MatchEvent(verdict) || f.MatchEvent(ev(conntrack.EventNew, dns)) {
		t.Error("event=VERDICT must pick VERDICT events only")
	}
	f = Filter{}
	f.Set("event", "ALL")
	f.Set("state", "ESTABLISHED")
	f.Set("dport", "5432")
	if !f.MatchEvent(verdict) {
		t.Error("a VERDICT has no state: state= must not refuse it")
	}
	if !f.MatchEvent(ev(conntrack.EventUpdate, established)) || f.MatchEvent(ev(conntrack.EventNew, natted)) || f.MatchEvent(ev(conntrack.EventNew, dns)) {
		t.Error("state=ESTABLISHED dport=5432 must pick the events of the established connection only")
	}
}

// TestMatchPacket: a capture filter picks both directions of a flow.
func TestMatchPacket(t *testing.T) {
	var f Filter
	f.Set("proto", "tcp")
	f.Set("dport", "5432")
	if !f.MatchPacket(tcpKey) || !f.MatchPacket(tcpKey.Reply()) || f.MatchPacket(udpKey) {
		t.Error("proto=tcp dport=5432 must pick the flow to 5432 both ways and nothing else")
	}
	f = Filter{}
	f.Set("src", "198.19.0.2")
	if !f.MatchPacket(tcpKey) {
		t.Error("src=198.19.0.2 must pick the answers of a flow to the server")
	}
	if err := (Filter{Status: Assured}).CheckPacket(); err == nil {
		t.Error("a capture filter must refuse status=")
	}
}

// TestFilterString: the text form names each field as its flag does.
func TestFilterString(t *testing.T) {
	var f Filter
	for _, kv := range [][2]string{{"proto", "tcp"}, {"src", "198.18.0.0/24"}, {"dport", "80"}, {"state", "ESTABLISHED,TIME_WAIT"}, {"nat", "true"}} {
		f.Set(kv[0], kv[1])
	}
	if got, want := f.String(), "proto=tcp src=198.18.0.0/24 dport=80 state=ESTABLISHED,TIME_WAIT nat=true"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if !(Filter{Events: allEvents}).IsZero() {
		t.Error("a filter of event types alone picks every connection: IsZero must say so")
	}
}
