package policy

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	"github.com/idlegate/idlegate/internal/yamlx"
)

// Profile is a built-in model of a real middlebox: the values of a Policy that the box's
// documentation states, each with its source. Values a profile does not set keep
// Default's (Linux netfilter). The facts and their sources are collected in the
// project's middlebox-timeouts notes; a profile test compares every value with them.
type Profile struct {
	// Name is how users pick the profile: lab up --profile NAME, from: NAME, replay.
	Name string `json:"name"`
	// Description is one line; it says "unconfirmed" when the profile rests on a value
	// no primary document states.
	Description string `json:"description"`
	// Reflects names the document(s) and the year the values reflect: vendors change
	// defaults.
	Reflects string `json:"reflects"`
	// Settings are the values the profile sets, in the order they are applied.
	Settings []Setting `json:"settings"`
	// Notes say what the box does that the model leaves out.
	Notes []string `json:"notes,omitempty"`
}

// Setting is one policy value of a profile and where it comes from.
type Setting struct {
	Key    string `json:"key"`    // dotted policy key, as for Policy.Set
	Value  string `json:"value"`  // YAML value
	Source string `json:"source"` // the document that states it, and what it says
	// Unconfirmed marks a value no primary document states (a secondary source, or a
	// guess that keeps the model usable).
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

// The lab's outside addresses (lab.NATAddr4 and lab.NATAddr6), written here because
// policy does not import lab. NAT profiles leave by them; a caller with other
// addresses replaces Policy.NAT.Outside after Policy().
const (
	ProfileNATAddr4 = "198.19.0.1"
	ProfileNATAddr6 = "fd00:19::1"
)

// Sources, as the middlebox-timeouts notes name them.
const (
	srcLinux    = "Linux Documentation/networking/nf_conntrack-sysctl.rst"
	srcLinuxEd  = "Linux net/netfilter/nf_conntrack_core.c (early_drop)"
	srcLinuxTCP = "Linux net/netfilter/nf_conntrack_proto_tcp.c"
	srcKube     = "kubernetes pkg/proxy/apis/config/v1alpha1/defaults.go"
	srcMoby     = "moby issue 31208 (Docker swarm / IPVS)"
	srcAWSNAT   = "AWS VPC User Guide, NAT gateway troubleshooting and comparison pages"
	srcNLB      = "Elastic Load Balancing, Network Load Balancer user guide"
	srcALB      = "Elastic Load Balancing, Application Load Balancer user guide"
	srcGWLB     = "Elastic Load Balancing, Gateway Load Balancer listeners page"
	srcAzureLB  = "Azure docs load-balancer-tcp-idle-timeout, load-balancer-tcp-reset"
	srcAzureNAT = "Azure docs nat-gateway-resource"
	srcGCP      = "Google Compute API RouterNat field docs; Cloud NAT tune-nat-configuration"
	srcASA      = "Cisco ASA CLI configuration guide, global timeouts"
	srcPAN      = "PAN-OS session timeout documentation"
	srcForti    = "Fortinet community technical tip 194357"
	srcSRX      = "Juniper SRX flow session documentation"
	srcPF       = "OpenBSD sys/net/pfvar.h; OpenBSD pf FAQ, options"
	srcIMC      = "Hätönen et al., An Experimental Study of Home Gateway Characteristics, IMC 2010"
	srcNATLab   = "the lab's outside addresses (lab.NATAddr4, lab.NATAddr6)"
)

const natOutside = "[" + ProfileNATAddr4 + ", \"" + ProfileNATAddr6 + "\"]"

// natOn returns the two settings every NAT profile starts with.
func natOn(why string) []Setting {
	return []Setting{
		{Key: "nat.outside", Value: natOutside, Source: srcNATLab},
		{Key: "nat.enabled", Value: "true", Source: why},
	}
}

func set(key, value, source string) Setting { return Setting{Key: key, Value: value, Source: source} }

func unconfirmed(key, value, source string) Setting {
	return Setting{Key: key, Value: value, Source: "unconfirmed: " + source, Unconfirmed: true}
}

func concat(parts ...[]Setting) []Setting {
	var out []Setting
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// linuxPickup is nf_conntrack_tcp_loose=1, Linux's default.
var linuxPickup = set("orphan", "pickup", srcLinux+": nf_conntrack_tcp_loose = 1, a mid-stream packet of an unknown flow creates a new entry")

// profiles are the built-in profiles, grouped as the notes group them.
var profiles = []Profile{
	{
		Name:        "linux-conntrack",
		Description: "Linux netfilter nf_conntrack as the kernel behaves with no ruleset: ESTABLISHED kept 5 days, unknown mid-stream packets picked up, invalid ones passed untracked",
		Reflects:    "Linux nf_conntrack-sysctl.rst, nf_conntrack_proto_tcp.c and nf_conntrack_core.c, kernel 6.x (2026)",
		Settings: []Setting{
			set("timeouts.tcp.syn_sent", "120s", srcLinux+": nf_conntrack_tcp_timeout_syn_sent 120"),
			set("timeouts.tcp.syn_recv", "60s", srcLinux+": nf_conntrack_tcp_timeout_syn_recv 60"),
			set("timeouts.tcp.established", "432000s", srcLinux+": nf_conntrack_tcp_timeout_established 432000"),
			set("timeouts.tcp.fin_wait", "120s", srcLinux+": nf_conntrack_tcp_timeout_fin_wait 120"),
			set("timeouts.tcp.close_wait", "60s", srcLinux+": nf_conntrack_tcp_timeout_close_wait 60"),
			set("timeouts.tcp.last_ack", "30s", srcLinux+": nf_conntrack_tcp_timeout_last_ack 30"),
			set("timeouts.tcp.time_wait", "120s", srcLinux+": nf_conntrack_tcp_timeout_time_wait 120"),
			set("timeouts.tcp.close", "10s", srcLinux+": nf_conntrack_tcp_timeout_close 10"),
			set("timeouts.tcp.unacknowledged", "300s", srcLinux+": nf_conntrack_tcp_timeout_unacknowledged 300"),
			set("timeouts.tcp.max_retrans", "300s", srcLinux+": nf_conntrack_tcp_timeout_max_retrans 300"),
			set("tcp_max_retrans", "3", srcLinux+": nf_conntrack_tcp_max_retrans 3"),
			set("timeouts.udp", "30s", srcLinux+": nf_conntrack_udp_timeout 30 (unreplied, and a flow answered only within its first 2 s)"),
			set("timeouts.udp_stream", "120s", srcLinux+": nf_conntrack_udp_timeout_stream 120 (180 on older kernels), for a flow still active 2 s after its creation"),
			set("timeouts.icmp", "30s", srcLinux+": nf_conntrack_icmp_timeout 30"),
			set("timeouts.generic", "600s", srcLinux+": nf_conntrack_generic_timeout 600"),
			set("capacity", "262144", srcLinux+": nf_conntrack_max = hash buckets, 262144 above 4 GiB of RAM (65536 above 1 GiB)"),
			set("on_full", "early-drop", srcLinuxEd+": drop a not-ASSURED entry, else drop the new packet"),
			linuxPickup,
			set("invalid", "accept", srcLinuxTCP+": a packet conntrack finds invalid is not dropped by conntrack; with no `ct state invalid drop` rule it passes untracked"),
			set("decrement_ttl", "true", "Linux net/ipv4/ip_forward.c: ip_decrease_ttl, ICMP time exceeded at TTL 1"),
		},
		Notes: []string{
			"window checks apply to RSTs only: Linux also marks data and ACKs beyond the peer's window invalid",
			"bad TCP and UDP checksums (nf_conntrack_checksum = 1) are not checked",
		},
	},
	{
		Name:        "kube-proxy",
		Description: "A Kubernetes node: Linux conntrack with kube-proxy's ESTABLISHED 24 h and CLOSE_WAIT 1 h",
		Reflects:    "kubernetes pkg/proxy/apis/config/v1alpha1/defaults.go (2026) over Linux nf_conntrack defaults",
		Settings: []Setting{
			set("timeouts.tcp.established", "86400s", srcKube+": conntrack tcpEstablishedTimeout 24h"),
			set("timeouts.tcp.close_wait", "3600s", srcKube+": conntrack tcpCloseWaitTimeout 1h"),
			set("on_full", "early-drop", srcLinuxEd),
			linuxPickup,
		},
	},
	{
		Name:        "docker-ipvs",
		Description: "Docker swarm service VIP (IPVS): connections forgotten after 900 s idle; silent drop after expiry unconfirmed",
		Reflects:    "moby issue 31208 (2017, still current in 2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "900s", srcMoby+": IPVS forgets a connection idle for 900 s"),
			unconfirmed("orphan", "drop", srcMoby+" reports hung connections, not resets; modelled as a silent drop"),
		},
	},
	{
		Name:        "aws-nat-gateway",
		Description: "AWS NAT Gateway: TCP idle 350 s fixed, RST to the inside host that keeps sending; outside->in reset and UDP timeout unconfirmed",
		Reflects:    "AWS VPC User Guide, NAT gateways (2026)",
		Settings: concat(natOn(srcAWSNAT+": source NAT to the gateway's address"), []Setting{
			set("timeouts.tcp.established", "350s", srcAWSNAT+": 350 s idle timeout, fixed (metric IdleTimeoutCount)"),
			unconfirmed("orphan", "reset", srcAWSNAT+": the inside host that sends on the dead flow gets a RST (never a FIN); outside->in is unconfirmed"),
			unconfirmed("timeouts.udp", "30s", "AWS documents no UDP idle timeout; Linux default kept"),
			unconfirmed("timeouts.udp_stream", "120s", "AWS documents no UDP idle timeout; Linux default kept"),
		}),
		Notes: []string{
			"55,000 connections per (destination IP, port, protocol) per public IP is not modelled: idlegate allocates ports per outside address",
		},
	},
	{
		Name:        "aws-nlb",
		Description: "AWS Network Load Balancer: TCP idle 350 s, RST to whoever sends after expiry, keepalive probes count, UDP 120 s",
		Reflects:    "Elastic Load Balancing, Network Load Balancer user guide (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "350s", srcNLB+": 350 s default, 60-6000 with tcp.idle_timeout.seconds (TLS listeners fixed at 350)"),
			set("orphan", "reset", srcNLB+": a client or target sending after the idle timeout receives a RST"),
			set("refresh", "any", srcNLB+": TCP keepalive packets reset the idle timeout"),
			set("timeouts.udp", "120s", srcNLB+": UDP idle timeout 120 s; the next packet is a new flow"),
			set("timeouts.udp_stream", "120s", srcNLB+": UDP idle timeout 120 s"),
		},
	},
	{
		Name:        "aws-alb",
		Description: "AWS Application Load Balancer: idle 60 s, only data counts (TCP keepalive ignored), connection closed at expiry",
		Reflects:    "Elastic Load Balancing, Application Load Balancer user guide (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "60s", srcALB+": connection idle timeout 60 s default, 1-4000"),
			set("refresh", "data", srcALB+": TCP keepalive does not reset the idle timer; at least one byte of data must be sent"),
			set("reset_on_expire", "true", srcALB+": the load balancer closes the connection at the idle timeout (idlegate sends a RST to both ends; it does not send FINs)"),
			set("orphan", "reset", srcALB+": a closed connection; the peer's next segment meets a RST as a closed socket would answer"),
		},
		Notes: []string{
			"the ALB is an HTTP(S) proxy: two TCP connections, client-ALB and ALB-target; idlegate models one",
			"the ALB closes with a FIN where idlegate sends a RST at the deadline",
		},
	},
	{
		Name:        "aws-gwlb",
		Description: "AWS Gateway Load Balancer, default listener: TCP idle 350 s, silent drop after expiry; UDP timeout unconfirmed",
		Reflects:    "Elastic Load Balancing, Gateway Load Balancer listeners page (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "350s", srcGWLB+": 350 s default, 60-6000"),
			set("orphan", "drop", srcGWLB+": send_tcp_reset.on_idle_timeout.enabled defaults to false"),
		},
	},
	{
		Name:        "aws-gwlb-reset",
		Description: "AWS Gateway Load Balancer with send_tcp_reset.on_idle_timeout: TCP idle 350 s, RST to a sender on an expired flow; UDP timeout unconfirmed",
		Reflects:    "Elastic Load Balancing, Gateway Load Balancer listeners page (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "350s", srcGWLB+": 350 s default, 60-6000"),
			set("orphan", "reset", srcGWLB+": send_tcp_reset.on_idle_timeout.enabled=true sends a RST to the sender of a packet on an expired flow"),
		},
	},
	{
		Name:        "azure-lb",
		Description: "Azure Load Balancer: TCP idle 4 min, silent drop after expiry; UDP timeout unconfirmed",
		Reflects:    "Azure docs load-balancer-tcp-idle-timeout and load-balancer-tcp-reset (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "240s", srcAzureLB+": 4 min default, 4-100 min"),
			set("orphan", "drop", srcAzureLB+": flows are silently dropped at the idle timeout"),
			set("reset_on_expire", "false", srcAzureLB+": enableTcpReset is off by default"),
		},
	},
	{
		Name:        "azure-lb-tcp-reset",
		Description: "Azure Load Balancer with enableTcpReset: TCP idle 4 min, RST to both ends at the moment of timeout (ESTABLISHED only)",
		Reflects:    "Azure docs load-balancer-tcp-reset (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "240s", srcAzureLB+": 4 min default, 4-100 min"),
			set("reset_on_expire", "true", srcAzureLB+": with enableTcpReset a RST goes to both ends at the idle timeout, ESTABLISHED connections only; never for UDP"),
			set("orphan", "drop", srcAzureLB+": after the reset the flow is gone; later packets are dropped"),
		},
	},
	{
		Name:        "azure-nat-gateway",
		Description: "Azure NAT Gateway: TCP idle 4 min, silent at expiry, RST when traffic later hits the dead flow; UDP 4 min",
		Reflects:    "Azure docs nat-gateway-resource (2026)",
		Settings: concat(natOn(srcAzureNAT+": source NAT to the gateway's public IP"), []Setting{
			set("timeouts.tcp.established", "240s", srcAzureNAT+": TCP idle timeout 4 min default, 4-120 min"),
			set("orphan", "reset", srcAzureNAT+": silent at expiry; a RST when traffic later hits the dead flow, in that direction"),
			set("timeouts.udp", "240s", srcAzureNAT+": UDP idle timeout 4 min, fixed"),
			set("timeouts.udp_stream", "240s", srcAzureNAT+": UDP idle timeout 4 min, fixed"),
		}),
		Notes: []string{
			"port hold-down after close (FIN 65 s, RST 16 s, half-open 30 s) is not modelled",
		},
	},
	{
		Name:        "gcp-cloud-nat",
		Description: "Google Cloud NAT: TCP established 1200 s, transitory 30 s, UDP and ICMP 30 s; silent drop after expiry from secondary sources only (unconfirmed)",
		Reflects:    "Google Compute API RouterNat reference and Cloud NAT tune-nat-configuration (2026, new gateways)",
		Settings: concat(natOn(srcGCP+": source NAT to the NAT IP"), []Setting{
			set("timeouts.tcp.established", "1200s", srcGCP+": tcpEstablishedIdleTimeoutSec 1200"),
			set("timeouts.tcp.syn_sent", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.syn_recv", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.fin_wait", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.close_wait", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.last_ack", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.close", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.syn_sent2", "30s", srcGCP+": tcpTransitoryIdleTimeoutSec 30"),
			set("timeouts.tcp.time_wait", "30s", srcGCP+": tcpTimeWaitTimeoutSec 30 for gateways created from 2026 (120 before)"),
			set("timeouts.udp", "30s", srcGCP+": udpIdleTimeoutSec 30"),
			set("timeouts.udp_stream", "30s", srcGCP+": udpIdleTimeoutSec 30"),
			set("timeouts.icmp", "30s", srcGCP+": icmpIdleTimeoutSec 30"),
			unconfirmed("orphan", "drop", "silent drop after expiry, from secondary sources only"),
		}),
		Notes: []string{
			"gateways created before 2026 keep TIME_WAIT 120 s: from: gcp-cloud-nat, then timeouts: {tcp: {time_wait: 120s}}",
		},
	},
	{
		Name:        "cisco-asa",
		Description: "Cisco ASA: conn 1 h, half-closed 10 min, embryonic 30 s, UDP 2 min, ICMP 2 s; silent drop after expiry",
		Reflects:    "Cisco ASA CLI configuration guide, global timeouts (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "3600s", srcASA+": timeout conn 1:00:00"),
			set("timeouts.tcp.fin_wait", "600s", srcASA+": timeout half-closed 0:10:00"),
			set("timeouts.tcp.close_wait", "600s", srcASA+": timeout half-closed 0:10:00"),
			set("timeouts.tcp.last_ack", "600s", srcASA+": timeout half-closed 0:10:00"),
			set("timeouts.tcp.syn_sent", "30s", srcASA+": timeout embryonic 0:00:30"),
			set("timeouts.tcp.syn_recv", "30s", srcASA+": timeout embryonic 0:00:30"),
			set("timeouts.udp", "120s", srcASA+": timeout udp 0:02:00"),
			set("timeouts.udp_stream", "120s", srcASA+": timeout udp 0:02:00"),
			set("timeouts.icmp", "2s", srcASA+": timeout icmp 0:00:02"),
			set("orphan", "drop", srcASA+": silent unless 'timeout conn ... reset' (idle reset) is configured"),
		},
		Notes: []string{
			"dead-connection-detection probes (optional) are not modelled",
		},
	},
	{
		Name:        "palo-alto",
		Description: "Palo Alto PAN-OS: TCP 3600 s, other protocols 30 s, half-closed 120 s and time-wait 15 s from secondary sources (unconfirmed); silent drop",
		Reflects:    "PAN-OS session timeout documentation (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "3600s", srcPAN+": TCP 3600"),
			set("timeouts.generic", "30s", srcPAN+": default 30 (protocols other than TCP, UDP, ICMP)"),
			unconfirmed("timeouts.tcp.fin_wait", "120s", "TCP half-closed 120, secondary sources"),
			unconfirmed("timeouts.tcp.close_wait", "120s", "TCP half-closed 120, secondary sources"),
			unconfirmed("timeouts.tcp.last_ack", "120s", "TCP half-closed 120, secondary sources"),
			unconfirmed("timeouts.tcp.time_wait", "15s", "TCP time-wait 15, secondary sources"),
			set("orphan", "drop", srcPAN+": silent drop"),
		},
		Notes: []string{
			"discard timeouts (TCP 90 s, UDP 60 s) apply to denied sessions and are not modelled",
		},
	},
	{
		Name:        "fortigate",
		Description: "FortiGate: session-ttl 3600 s, silent drop after expiry",
		Reflects:    "Fortinet community technical tip 194357 (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "3600s", srcForti+": config system session-ttl, default 3600 (300-2764800)"),
			set("orphan", "drop", srcForti+": silent drop"),
		},
	},
	{
		Name:        "juniper-srx",
		Description: "Juniper SRX: TCP 1800 s, tcp-initial 20 s, UDP 60 s; silent drop after expiry",
		Reflects:    "Juniper SRX flow session documentation (2026)",
		Settings: []Setting{
			set("timeouts.tcp.established", "1800s", srcSRX+": TCP session timeout 1800"),
			set("timeouts.tcp.syn_sent", "20s", srcSRX+": tcp-initial-timeout 20"),
			set("timeouts.tcp.syn_recv", "20s", srcSRX+": tcp-initial-timeout 20"),
			set("timeouts.udp", "60s", srcSRX+": UDP session timeout 60"),
			set("timeouts.udp_stream", "60s", srcSRX+": UDP session timeout 60"),
			set("orphan", "drop", srcSRX+": silent drop"),
		},
	},
	{
		Name:        "pf",
		Description: "OpenBSD/FreeBSD pf defaults: tcp.established 24 h, udp 60 s, icmp 20 s, 100000 states; silent drop",
		Reflects:    "OpenBSD sys/net/pfvar.h and pf FAQ (2026)",
		Settings: []Setting{
			set("timeouts.tcp.syn_sent", "120s", srcPF+": tcp.first 120"),
			set("timeouts.tcp.syn_recv", "30s", srcPF+": tcp.opening 30"),
			set("timeouts.tcp.established", "86400s", srcPF+": tcp.established 86400"),
			set("timeouts.tcp.fin_wait", "900s", srcPF+": tcp.closing 900 (after the first FIN)"),
			set("timeouts.tcp.close_wait", "900s", srcPF+": tcp.closing 900 (after the first FIN)"),
			set("timeouts.tcp.last_ack", "45s", srcPF+": tcp.finwait 45 (both FINs exchanged)"),
			set("timeouts.tcp.time_wait", "45s", srcPF+": tcp.finwait 45 (both FINs exchanged)"),
			set("timeouts.tcp.close", "90s", srcPF+": tcp.closed 90 (after a RST)"),
			set("timeouts.udp", "60s", srcPF+": udp.first 60"),
			set("timeouts.udp_stream", "60s", srcPF+": udp.multiple 60"),
			set("timeouts.icmp", "20s", srcPF+": icmp.first 20"),
			set("capacity", "100000", srcPF+": limit states 100000"),
			set("on_full", "drop-new", srcPF+": no state can be created when the limit is reached"),
			set("orphan", "drop", srcPF+": a packet matching no state is dropped"),
		},
		Notes: []string{
			"udp.single 30 s (only the source has sent, more than once) and icmp.error 10 s are not modelled",
			"adaptive timeouts (adaptive.start/end) are not modelled",
		},
	},
	{
		Name:        "home-router",
		Description: "Consumer NAT router: small table with LRU eviction (1024 entries, illustrative), UDP bindings 30 s",
		Reflects:    "Hätönen et al., IMC 2010 (34 home gateways measured)",
		Settings: concat(natOn(srcIMC+": home gateways are NATs"), []Setting{
			set("timeouts.udp", "30s", srcIMC+": UDP bindings seen as short as 30 s"),
			set("timeouts.udp_stream", "30s", srcIMC+": UDP bindings seen as short as 30 s"),
			set("on_full", "evict-lru", srcIMC+": LRU-like eviction when the table is small"),
			unconfirmed("capacity", "1024", "illustrative small table: the study gives no table size"),
			set("orphan", "drop", srcIMC+": packets of a forgotten binding are dropped"),
		}),
	},
	{
		Name:        "rfc-minimum",
		Description: "The smallest timeouts RFC 5382, RFC 4787 and RFC 5508 allow a NAT: TCP established 2 h 4 min, transitory 4 min, UDP 2 min, ICMP 60 s",
		Reflects:    "RFC 5382 (2008), RFC 4787 (2007), RFC 5508 (2009), RFC 7857 (2016)",
		Settings: concat(natOn("RFC 4787 and RFC 5382 describe NATs"), []Setting{
			set("timeouts.tcp.established", "7440s", "RFC 5382 REQ-5: established idle-timeout MUST NOT be less than 2 hours 4 minutes"),
			set("timeouts.tcp.syn_sent", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.syn_recv", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.fin_wait", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.close_wait", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.last_ack", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.time_wait", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.syn_sent2", "240s", "RFC 5382 REQ-5: transitory idle-timeout MUST NOT be less than 4 minutes"),
			set("timeouts.tcp.close", "240s", "RFC 7857 2.2: after a RST, wait 4 minutes before deleting the session"),
			set("timeouts.udp", "120s", "RFC 4787 REQ-5: a UDP mapping timer MUST NOT expire in less than 2 minutes"),
			set("timeouts.udp_stream", "120s", "RFC 4787 REQ-5: a UDP mapping timer MUST NOT expire in less than 2 minutes"),
			set("timeouts.icmp", "60s", "RFC 5508 REQ-2: an ICMP query mapping MUST NOT expire in less than 60 seconds"),
			set("nat.mapping", "endpoint-independent", "RFC 4787 REQ-1, RFC 5382 REQ-1: endpoint-independent mapping"),
			set("orphan", "drop", "RFC 5382 REQ-4: do not answer an unsolicited inbound SYN for at least 6 s"),
		}),
		Notes: []string{
			"RFC 4787 REQ-5 RECOMMENDS 5 min for UDP; this profile uses the 2 min floor",
		},
	},
}

// Profiles returns the built-in profiles, in a fixed order.
func Profiles() []Profile {
	out := make([]Profile, len(profiles))
	copy(out, profiles)
	return out
}

// ProfileNames returns the names of the built-in profiles, sorted.
func ProfileNames() []string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	sort.Strings(names)
	return names
}

// UnknownProfileError is returned for a profile name that is not built in.
type UnknownProfileError struct{ Name string }

func (e *UnknownProfileError) Error() string {
	return fmt.Sprintf("unknown profile %q; known profiles: %s (see `idlegate profiles`)", e.Name, strings.Join(ProfileNames(), ", "))
}

// LookupProfile finds a built-in profile by name; the error names the known ones.
func LookupProfile(name string) (Profile, error) {
	for _, p := range profiles {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, &UnknownProfileError{Name: name}
}

// ProfilePolicy is LookupProfile(name).Policy().
func ProfilePolicy(name string) (Policy, error) {
	pr, err := LookupProfile(name)
	if err != nil {
		return Policy{}, err
	}
	return pr.Policy(), nil
}

// Policy is Default with the profile's settings applied. The built-in profiles are
// valid (a test applies every one); a profile that is not panics.
func (pr Profile) Policy() Policy {
	p := Default()
	for _, s := range pr.Settings {
		if err := p.Set(s.Key, s.Value); err != nil {
			panic(fmt.Sprintf("profile %s: %s=%s: %v", pr.Name, s.Key, s.Value, err))
		}
	}
	return p
}

// Unconfirmed reports whether any value of the profile is unconfirmed.
func (pr Profile) Unconfirmed() bool {
	for _, s := range pr.Settings {
		if s.Unconfirmed {
			return true
		}
	}
	return false
}

// Value is one key of a policy with its value and where the value comes from.
type Value struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Source      string `json:"source"`
	FromProfile bool   `json:"from_profile"` // set by the profile (else idlegate's default)
	Unconfirmed bool   `json:"unconfirmed,omitempty"`
}

// defaultSource is what `profiles show` says of a value a profile does not set.
func defaultSource(key string) string {
	switch {
	case strings.HasPrefix(key, "timeouts."), key == "capacity", key == "on_full", key == "tcp_max_retrans":
		return "not stated for this box: Linux default (nf_conntrack-sysctl.rst)"
	case key == "invalid":
		return "not stated for this box: idlegate default, a firewall's `ct state invalid drop`"
	case key == "decrement_ttl":
		return "not stated for this box: idlegate default, a router hop (RFC 1812 5.3.1)"
	case key == "nat.mapping":
		return "not stated for this box: idlegate default, endpoint-independent (RFC 4787 REQ-1)"
	case key == "nat.filtering":
		return "not stated for this box: idlegate default, the strictest RFC 4787 filtering"
	}
	return "not stated for this box: idlegate default"
}

// Values lists every key of the profile's policy with its value and source. NAT keys
// are listed only when NAT is on; verdict_events (a debugging switch) never.
func (pr Profile) Values() []Value {
	p := pr.Policy()
	bySet := map[string]Setting{}
	for _, s := range pr.Settings {
		bySet[s.Key] = s
	}
	var out []Value
	for _, kv := range p.KeyValues() {
		v := Value{Key: kv[0], Value: kv[1], Source: defaultSource(kv[0])}
		if s, ok := bySet[kv[0]]; ok {
			v.Source, v.FromProfile, v.Unconfirmed = s.Source, true, s.Unconfirmed
		}
		out = append(out, v)
	}
	return out
}

// KeyValues lists every key of the policy as {dotted key, YAML value}, in the order of
// the YAML document. NAT keys other than nat.enabled are left out when NAT is off;
// verdict_events is left out.
func (p Policy) KeyValues() [][2]string {
	var out [][2]string
	walkKeys(reflect.ValueOf(p), "", func(key string, v reflect.Value) {
		if key == "verdict_events" || !p.NAT.Enabled && strings.HasPrefix(key, "nat.") && key != "nat.enabled" {
			return
		}
		out = append(out, [2]string{key, renderValue(v)})
	})
	return out
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

func walkKeys(v reflect.Value, path string, f func(string, reflect.Value)) {
	if v.Kind() == reflect.Struct && !v.Type().Implements(textMarshaler) {
		for i := 0; i < v.NumField(); i++ {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			walkKeys(v.Field(i), yamlx.Join(path, tag), f)
		}
		return
	}
	f(path, v)
}

func renderValue(v reflect.Value) string {
	if v.Kind() == reflect.Slice {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = renderValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

// ProfileNATOutside parses the profile NAT addresses, for tests and callers that
// compare them with the lab's.
func ProfileNATOutside() []netip.Addr {
	return []netip.Addr{netip.MustParseAddr(ProfileNATAddr4), netip.MustParseAddr(ProfileNATAddr6)}
}
