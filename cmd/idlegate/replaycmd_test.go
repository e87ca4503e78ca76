package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/replay"
)

// writeCapture writes an Ethernet pcap of one TCP connection to 198.19.0.2:5432 that
// sends a query, idles 400 s and sends another; it returns the path and the record
// number of the late query.
func writeCapture(t *testing.T, link layers.LinkType) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	cli, srv := net.IPv4(198, 18, 0, 2), net.IPv4(198, 19, 0, 2)
	t0 := time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)
	n := 0
	seg := func(at time.Duration, fromClient bool, flags string, seq, ack uint32, payload string) {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli, DstIP: srv}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 5432, Seq: seq, Ack: ack, Window: 65000,
			SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), PSH: payload != ""}
		if !fromClient {
			ip.SrcIP, ip.DstIP = srv, cli
			tcp.SrcPort, tcp.DstPort = 5432, 40000
		}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		ls := []gopacket.SerializableLayer{ip, tcp, gopacket.Payload(payload)}
		if link == layers.LinkTypeEthernet {
			ls = append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
				DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}}, ls...)
		}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(at), CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
		n++
	}
	seg(0, true, "S", 100, 0, "")
	seg(time.Millisecond, false, "SA", 500, 101, "")
	seg(2*time.Millisecond, true, "A", 101, 501, "")
	seg(time.Second, true, "A", 101, 501, "SELECT 1")
	seg(time.Second+time.Millisecond, false, "A", 501, 109, "")
	seg(401*time.Second, true, "A", 109, 501, "SELECT 2")
	late := n
	seg(401*time.Second+time.Millisecond, false, "A", 501, 117, "")
	return path, late
}

func TestReplayCmd(t *testing.T) {
	path, late := writeCapture(t, layers.LinkTypeEthernet)
	out, _ := wantCode(t, 0, "replay", path, "--profile", "linux-conntrack,aws-nat-gateway,gcp-cloud-nat")
	for _, want := range []string{"FLOW", "linux-conntrack", "reset @6",
		"this capture survives linux-conntrack and gcp-cloud-nat, breaks on aws-nat-gateway at packet 6",
		"aws-nat-gateway: first break tcp 198.18.0.2:40000 -> 198.19.0.2:5432 reset at packet 6"} {
		if !strings.Contains(out, want) {
			t.Errorf("replay lacks %q:\n%s", want, out)
		}
	}
	if late != 6 {
		t.Fatalf("the late query is record %d", late)
	}
	out, _ = wantCode(t, 0, "replay", path, "--profile", "azure-lb", "-o", "json")
	var rep replay.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	fr := rep.Profiles[0].Flows[0]
	if fr.Outcome != replay.Dropped || fr.Packet != 6 || fr.Timeout != 240 || fr.Idle < 399.99 {
		t.Fatalf("azure-lb flow %+v", fr)
	}
	// --inside says which side is the client.
	out, _ = wantCode(t, 0, "replay", path, "--profile", "aws-nlb", "--inside", "198.18.0.0/24")
	if !strings.Contains(out, "from --inside") {
		t.Errorf("--inside not used:\n%s", out)
	}
	// --write keeps what crossed plus the injected RSTs, and reads back.
	crossed := filepath.Join(t.TempDir(), "crossed.pcapng")
	out, _ = wantCode(t, 0, "replay", path, "--profile", "aws-nat-gateway", "--write", crossed)
	if !strings.Contains(out, "wrote what crossed aws-nat-gateway to "+crossed) {
		t.Errorf("no word of --write:\n%s", out)
	}
	out, _ = wantCode(t, 0, "replay", crossed, "--profile", "linux-conntrack", "-o", "json")
	var back replay.Report
	if err := json.Unmarshal([]byte(out), &back); err != nil {
		t.Fatal(err)
	}
	if back.Packets != 5 || back.Skipped != 2 || back.Direction != replay.DirInterfaces {
		t.Errorf("written capture: %d packets, %d skipped, direction %s; want 5 forwarded and 2 injected", back.Packets, back.Skipped, back.Direction)
	}
	// The time scale shows scaled and real values.
	out, _ = wantCode(t, 0, "replay", path, "--profile", "aws-nat-gateway", "--time-scale", "0.5")
	if !strings.Contains(out, "175s (real 350s)") {
		t.Errorf("scaled replay:\n%s", out)
	}
}

func TestReplayCmdErrors(t *testing.T) {
	dir := t.TempDir()
	good, _ := writeCapture(t, layers.LinkTypeEthernet)
	b, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.pcap")
	os.WriteFile(trunc, b[:len(b)-7], 0o600)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a capture at all\n"), 0o600)
	wifi := filepath.Join(dir, "wifi.pcap")
	f, _ := os.Create(wifi)
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeIEEE80211Radio)
	f.Close()
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"replay", filepath.Join(dir, "missing.pcap"), "--profile", "pf"}, []string{"cannot open capture", "missing.pcap"}},
		{[]string{"replay", dir, "--profile", "pf"}, []string{dir + " is a directory", "give a pcap or pcapng file"}},
		{[]string{"replay", trunc, "--profile", "pf"}, []string{"trunc.pcap is truncated"}},
		{[]string{"replay", text, "--profile", "pf"}, []string{"notes.txt is not a pcap or pcapng capture"}},
		{[]string{"replay", wifi, "--profile", "pf"}, []string{"has link type", "(127)", "which replay cannot read"}},
		{[]string{"replay", good}, []string{"--profile"}},
		{[]string{"replay", good, "--profile", "pf,aws-alb", "--write", filepath.Join(dir, "x.pcap")}, []string{"exactly one profile"}},
		{[]string{"replay", good, "--profile", "pf", "--inside", "not-a-net"}, []string{`--inside "not-a-net"`}},
	} {
		_, errs := wantCode(t, exitUsage, tc.args...)
		oneSentence(t, errs, tc.wants...)
	}
}

// TestReplayFailOnBreak: with --fail-on-break a capture whose flow breaks on a
// profile exits 1, after the report (text or JSON) and with a sentence naming the
// profiles; one that survives every profile exits 0, and without the flag a break
// is no failure.
func TestReplayFailOnBreak(t *testing.T) {
	path, _ := writeCapture(t, layers.LinkTypeEthernet)
	out, errs := wantCode(t, exitFailure, "replay", path, "--profile", "linux-conntrack,aws-nat-gateway,azure-lb", "--fail-on-break")
	if !strings.Contains(out, "breaks on aws-nat-gateway") || !strings.Contains(out, "FLOW") {
		t.Errorf("the report is missing before the failure:\n%s", out)
	}
	oneSentence(t, errs, "--fail-on-break: flows break (1 on aws-nat-gateway, 1 on azure-lb)")
	out, _ = wantCode(t, exitFailure, "replay", path, "--profile", "aws-nat-gateway", "--fail-on-break", "-o", "json")
	var rep replay.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Profiles[0].Broken != 1 {
		t.Errorf("-o json with --fail-on-break: %v, %+v\n%s", err, rep.Profiles, out)
	}
	wantCode(t, 0, "replay", path, "--profile", "linux-conntrack,gcp-cloud-nat", "--fail-on-break")
	wantCode(t, 0, "replay", path, "--profile", "aws-nat-gateway")
}
