package packet

import (
	"bytes"
	"errors"
	"testing"
)

func TestIPVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want uint8
	}{
		{"empty", nil, 0},
		{"ipv4", tcp4("198.18.0.2:1", "198.19.0.2:2", TCPAck, 1, 1, nil), 4},
		{"ipv6", tcp6("[fd00:18::2]:1", "[fd00:19::2]:2", TCPAck, 1, 1, nil), 6},
		{"one byte", []byte{0x45}, 4},
		{"other version", []byte{0x55, 0, 0, 20}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IPVersion(tc.b); got != tc.want {
				t.Errorf("IPVersion = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestIPLen(t *testing.T) {
	data4 := tcp4("198.18.0.2:40000", "198.19.0.2:80", TCPAck|TCPPsh, 1, 1, bytesOf(100, 1))
	data6 := tcp6("[fd00:18::2]:40000", "[fd00:19::2]:80", TCPAck|TCPPsh, 1, 1, bytesOf(100, 1))
	opts4 := withIPv4Options(data4, []byte{0x94, 4, 0, 0})
	ext6 := withExt(data6, hbh(1), dstopts(2))
	badIHL := bytes.Clone(data4)
	badIHL[0] = 0x44
	for _, tc := range []struct {
		name string
		b    []byte
		want int
		// decodeErr is what Decode says of b (nil: it decodes, and its
		// TotalLen is want).
		decodeErr error
	}{
		{"ipv4", data4, 140, nil},
		{"ipv4 options", opts4, 144, nil},
		{"ipv6", data6, 160, nil},
		{"ipv6 extension headers", ext6, 160 + 8 + 16, nil},
		{"ipv4 trailing bytes", append(bytes.Clone(data4), 0, 0, 0), 140, nil},
		{"ipv4 cut short", data4[:60], 140, ErrBadTotalLen},
		{"ipv6 cut short", data6[:60], 160, ErrBadTotalLen},
		{"ipv4 header cut", data4[:19], 0, ErrTruncated},
		{"ipv6 header cut", data6[:39], 0, ErrTruncated},
		{"bad IHL", badIHL, 140, ErrBadHeaderLen},
		{"other version", []byte{0x55, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, ErrBadVersion},
		{"empty", nil, 0, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IPLen(tc.b); got != tc.want {
				t.Errorf("IPLen = %d, want %d", got, tc.want)
			}
			var p Info
			err := Decode(tc.b, &p)
			if !errors.Is(err, tc.decodeErr) {
				t.Fatalf("Decode: %v, want %v", err, tc.decodeErr)
			}
			if err == nil && p.TotalLen != tc.want {
				t.Errorf("Decode's TotalLen %d, IPLen %d", p.TotalLen, tc.want)
			}
		})
	}
}
