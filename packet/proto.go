package packet

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58

	// IPv6 extension headers and chain ends (RFC 8200 4, RFC 4302, RFC 4303).
	ProtoHopByHop uint8 = 0
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoESP      uint8 = 50
	ProtoAH       uint8 = 51
	ProtoNoNext   uint8 = 59
	ProtoDstOpts  uint8 = 60
)

// TCP flags, the low byte of the flags field (RFC 9293 3.1, RFC 3168 23.2).
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// ICMP types this package interprets (RFC 792, RFC 4443).
const (
	ICMPv4EchoReply           uint8 = 0
	ICMPv4Unreachable         uint8 = 3
	ICMPv4SourceQuench        uint8 = 4
	ICMPv4Redirect            uint8 = 5
	ICMPv4EchoRequest         uint8 = 8
	ICMPv4TimeExceeded        uint8 = 11
	ICMPv4ParamProblem        uint8 = 12
	ICMPv6Unreachable         uint8 = 1
	ICMPv6PacketTooBig        uint8 = 2
	ICMPv6TimeExceeded        uint8 = 3
	ICMPv6ParamProblem        uint8 = 4
	ICMPv6EchoRequest         uint8 = 128
	ICMPv6EchoReply           uint8 = 129
	ICMPv4CodeAdminProhibited uint8 = 13 // RFC 1812 5.2.7.1
	ICMPv6CodeAdminProhibited uint8 = 1  // RFC 4443 3.1
)
