package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	ones := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 0xff
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0xab}},
		{"two bytes", []byte{0xab, 0xcd}},
		{"three bytes", []byte{0xab, 0xcd, 0xef}},
		{"seven bytes", random(7)},
		{"rfc1071 example", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}},
		{"all ones 65535", ones(65535)},
		{"all zeros", make([]byte, 100)},
		{"random 1500", random(1500)},
		{"random 1501", random(1501)},
		{"random 65535", random(65535)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := Checksum(tc.b, 0), refSum(tc.b); got != want {
				t.Errorf("Checksum = %#04x, want %#04x", got, want)
			}
			// Chained even pieces sum to the whole.
			if len(tc.b) >= 4 {
				h := len(tc.b) / 4 * 2
				if got, want := Checksum(tc.b[h:], sum(tc.b[:h], 0)), refSum(tc.b); got != want {
					t.Errorf("chained Checksum = %#04x, want %#04x", got, want)
				}
			}
		})
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		proto    uint8
		n        int
	}{
		{"ipv4 tcp", "192.0.2.1", "198.51.100.7", ProtoTCP, 40},
		{"ipv4 udp odd", "10.255.255.1", "255.0.0.254", ProtoUDP, 65535},
		{"ipv6 tcp", "2001:db8::1", "2001:db8:ffff::ffff", ProtoTCP, 1440},
		{"ipv6 icmpv6 large", "fe80::1", "ff02::1", ProtoICMPv6, 70000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, d := ip(tc.src), ip(tc.dst)
			want := refSum(refPseudo(s.AsSlice(), d.AsSlice(), tc.proto, tc.n))
			if got := ^fold(PseudoHeaderSum(s, d, tc.proto, tc.n)); got != want {
				t.Errorf("PseudoHeaderSum folded = %#04x, want %#04x", ^got, ^want)
			}
		})
	}
}

func TestUpdateChecksum(t *testing.T) {
	t.Run("rfc1624 example", func(t *testing.T) {
		// RFC 1624 section 4: HC = 0xdd2f, m = 0x5555, m' = 0x3285; eqn. 3 gives 0x0000.
		if got := updateChecksum16(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
			t.Errorf("updateChecksum16 = %#04x, want 0x0000", got)
		}
	})
	rng := rand.New(rand.NewPCG(3, 4))
	t.Run("random words", func(t *testing.T) {
		for range 20000 {
			b := make([]byte, 2+2*rng.IntN(40))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			// Small sums hit the folding corner cases.
			if rng.IntN(4) == 0 {
				for i := range b {
					b[i] &= 0x01
				}
			}
			c := refSum(b)
			i := 2 * rng.IntN(len(b)/2)
			old := binary.BigEndian.Uint16(b[i:])
			nw := uint16(rng.Uint32())
			binary.BigEndian.PutUint16(b[i:], nw)
			if got, want := updateChecksum16(c, old, nw), refSum(b); got != want {
				t.Fatalf("updateChecksum16(%#04x, %#04x, %#04x) = %#04x, want %#04x", c, old, nw, got, want)
			}
		}
	})
	t.Run("random addresses", func(t *testing.T) {
		for range 5000 {
			n := 4
			if rng.IntN(2) == 0 {
				n = 16
			}
			b := make([]byte, 40)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			old := netip.AddrFrom16([16]byte(b[8:24]))
			if n == 4 {
				old = netip.AddrFrom4([4]byte(b[8:12]))
			}
			c := refSum(b)
			var nb [16]byte
			for i := range nb {
				nb[i] = byte(rng.Uint32())
			}
			nw := netip.AddrFrom16(nb)
			if n == 4 {
				nw = netip.AddrFrom4([4]byte(nb[:4]))
			}
			copy(b[8:8+n], nw.AsSlice())
			if got, want := updateDelta(c, sumDelta(sum(old.AsSlice(), 0), sum(nw.AsSlice(), 0))), refSum(b); got != want {
				t.Fatalf("updateDelta = %#04x, want %#04x", got, want)
			}
		}
	})
}
