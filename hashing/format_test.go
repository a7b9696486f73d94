package hashing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cespare/xxhash/v2"
)

// unsized hides the concrete reader type, so ReadTable cannot know how many
// bytes are left and must take its streaming path.
type unsized struct{ io.Reader }

func TestWriteReadRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     uint32
		users int
	}{
		{"empty", 1, 0},
		{"one", 7, 1},
		{"several chunks", 4096, 3*chunkUsers + 17},
		{"max buckets", MaxBuckets, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := randomTable(t, tc.n, tc.users, 99)
			data := encode(t, want)
			if got := len(data); got != 10*tc.users+40 {
				t.Fatalf("file is %d bytes, want 10*U+40 = %d", got, 10*tc.users+40)
			}
			readers := map[string]io.Reader{
				"bytes.Reader":  bytes.NewReader(data),
				"bytes.Buffer":  bytes.NewBuffer(data),
				"strings":       strings.NewReader(string(data)),
				"unsized":       unsized{bytes.NewReader(data)},
				"one byte read": iotest.OneByteReader(bytes.NewReader(data)),
				"half reads":    iotest.HalfReader(bytes.NewReader(data)),
			}
			for rname, r := range readers {
				got, err := ReadTable(r)
				if err != nil {
					t.Fatalf("%s: %v", rname, err)
				}
				checkInvariants(t, got)
				if got.Buckets() != want.Buckets() || got.Len() != want.Len() {
					t.Fatalf("%s: N %d users %d, want %d %d", rname, got.Buckets(), got.Len(), want.Buckets(), want.Len())
				}
				if got.SizeBytes() != want.SizeBytes() {
					t.Fatalf("%s: SizeBytes %d, want %d", rname, got.SizeBytes(), want.SizeBytes())
				}
				wantHashes, wantBuckets := usersOf(want)
				for i, h := range wantHashes {
					if b, ok := got.Lookup(h); !ok || b != uint32(wantBuckets[i]) {
						t.Fatalf("%s: Lookup(%016x) = %d, %v; want %d", rname, h, b, ok, wantBuckets[i])
					}
				}
				if again := encode(t, got); !bytes.Equal(again, data) {
					t.Fatalf("%s: second encoding differs", rname)
				}
			}
		})
	}
}

func TestLoadTable(t *testing.T) {
	dir := t.TempDir()
	want := randomTable(t, 64, 1000, 5)
	good := filepath.Join(dir, "good.srt")
	if err := os.WriteFile(good, encode(t, want), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadTable(good)
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != 1000 || got.Buckets() != 64 {
		t.Fatalf("loaded %d users, N %d", got.Len(), got.Buckets())
	}

	missing := filepath.Join(dir, "missing.srt")
	if _, err := LoadTable(missing); err == nil || !errors.Is(err, os.ErrNotExist) ||
		!strings.HasPrefix(err.Error(), "hashing: ") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}

	// A cut file: the size is known, so the count is judged before reading.
	cut := filepath.Join(dir, "cut.srt")
	os.WriteFile(cut, encode(t, want)[:5000], 0o644)
	_, err = LoadTable(cut)
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrUserCount) {
		t.Fatalf("cut file: %v", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "hashing: load table "+cut+": ") || strings.Count(msg, "hashing:") != 1 {
		t.Fatalf("cut file: message %q", msg)
	}
}

// corrupt describes one way to damage a valid file and the error it must
// produce.
type corrupt struct {
	name   string
	damage func(b []byte) []byte
	// reseal recomputes the checksum after damage, to reach the checks
	// that run after it.
	reseal bool
	want   []error
	// msg must appear in the error text when set.
	msg string
	// sizedOnly / unsizedOnly restrict the case to readers whose size
	// ReadTable knows / does not know.
	sizedOnly, unsizedOnly bool
}

func put32(off int, v uint32) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
}

func put64(off int, v uint64) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
}

func flip(off int) func([]byte) []byte {
	return func(b []byte) []byte {
		if off < 0 {
			off += len(b)
		}
		b[off] ^= 0x10
		return b
	}
}

func cut(n int) func([]byte) []byte {
	return func(b []byte) []byte {
		if n < 0 {
			n += len(b)
		}
		return b[:n]
	}
}

func reseal(b []byte) {
	body := len(b) - trailerSize
	binary.LittleEndian.PutUint64(b[body:], xxhash.Sum64(b[:body]))
}

// corruptions for a file of 100 users and N = 64: hashes start at 32,
// buckets at 832, the checksum at 1032.
var corruptions = []corrupt{
	{name: "bad magic", damage: flip(0), want: []error{ErrBadMagic}, msg: "SRTABLE"},
	{name: "not a table", damage: func([]byte) []byte { return []byte(strings.Repeat("# some yaml\n", 10)) }, want: []error{ErrBadMagic}},
	{name: "version 2", damage: put32(8, 2), want: []error{ErrUnsupportedVersion}, msg: "version 2"},
	{name: "version 0", damage: put32(8, 0), want: []error{ErrUnsupportedVersion}},
	{name: "hash id 2", damage: put32(12, 2), want: []error{ErrUnknownHash}, msg: "hash id 2"},
	{name: "N zero", damage: put32(16, 0), want: []error{ErrBucketCount}},
	{name: "N too large", damage: put32(16, MaxBuckets+1), want: []error{ErrBucketCount}, msg: "65537"},
	{name: "reserved set", damage: put32(20, 1), want: []error{ErrUnsupportedVersion}, msg: "reserved"},
	{name: "users over maximum", damage: put64(24, 1<<40), want: []error{ErrUserCount}, msg: "1099511627776"},
	{name: "users over maximum by one", damage: put64(24, MaxUsers+1), want: []error{ErrUserCount}},
	{name: "users too many for size", damage: put64(24, 1<<31), want: []error{ErrUserCount, ErrTruncated}, msg: "2147483648 users", sizedOnly: true},
	{name: "users too many streamed", damage: put64(24, 1<<31), want: []error{ErrTruncated}, unsizedOnly: true},
	{name: "users one more", damage: put64(24, 101), want: []error{ErrTruncated}},
	{name: "users one fewer", damage: put64(24, 99), want: []error{ErrChecksum}},
	{name: "empty", damage: cut(0), want: []error{ErrTruncated}},
	{name: "cut in header", damage: cut(20), want: []error{ErrTruncated}, msg: "header"},
	{name: "cut in hashes", damage: cut(500), want: []error{ErrTruncated}},
	{name: "cut in buckets", damage: cut(900), want: []error{ErrTruncated}},
	{name: "cut in checksum", damage: cut(-3), want: []error{ErrTruncated}},
	{name: "cut before checksum", damage: cut(-8), want: []error{ErrTruncated}},
	{name: "hash byte flipped", damage: flip(100), want: []error{ErrChecksum}},
	{name: "bucket byte flipped", damage: flip(900), want: []error{ErrChecksum}},
	{name: "checksum flipped", damage: flip(-1), want: []error{ErrChecksum}},
	{name: "N changed", damage: put32(16, 63), want: []error{ErrChecksum}},
	{name: "trailing byte", damage: func(b []byte) []byte { return append(b, 0) }, want: []error{ErrTrailingData}},
	{name: "trailing table", damage: func(b []byte) []byte { return append(b, b...) }, want: []error{ErrTrailingData}},
	{
		name: "hashes swapped", reseal: true, want: []error{ErrNotAscending}, msg: "index 6",
		damage: func(b []byte) []byte {
			x, y := b[32+5*8:32+6*8], b[32+6*8:32+7*8]
			var tmp [8]byte
			copy(tmp[:], x)
			copy(x, y)
			copy(y, tmp[:])
			return b
		},
	},
	{
		name: "hash repeated", reseal: true, want: []error{ErrNotAscending}, msg: "index 10",
		damage: func(b []byte) []byte { copy(b[32+10*8:32+11*8], b[32+9*8:]); return b },
	},
	{name: "bucket equals N", reseal: true, damage: put32(832+7*2, 64), want: []error{ErrBucketRange}, msg: "index 7"},
	{name: "last bucket huge", reseal: true, damage: func(b []byte) []byte { binary.LittleEndian.PutUint16(b[832+99*2:], 0xffff); return b }, want: []error{ErrBucketRange}, msg: "index 99"},
}

func TestReadTableRejects(t *testing.T) {
	valid := encode(t, randomTable(t, 64, 100, 3))
	if len(valid) != 1040 {
		t.Fatalf("valid file is %d bytes; the offsets in corruptions assume 1040", len(valid))
	}
	for _, tc := range corruptions {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.damage(bytes.Clone(valid))
			if tc.reseal {
				reseal(data)
			}
			for _, sized := range []bool{true, false} {
				if (tc.sizedOnly && !sized) || (tc.unsizedOnly && sized) {
					continue
				}
				var r io.Reader = bytes.NewReader(data)
				if !sized {
					r = unsized{r}
				}
				tb, err := ReadTable(r)
				if err == nil {
					t.Fatalf("sized=%v: accepted a table of %d users", sized, tb.Len())
				}
				if !strings.HasPrefix(err.Error(), "hashing: ") {
					t.Errorf("sized=%v: error %q lacks the package prefix", sized, err)
				}
				for _, want := range tc.want {
					if !errors.Is(err, want) {
						t.Errorf("sized=%v: error %q is not %q", sized, err, want)
					}
				}
				if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("sized=%v: error %q does not mention %q", sized, err, tc.msg)
				}
			}
		})
	}
}

// TestReadTableReaderError passes a reader's own failure through, rather
// than calling it a truncated file.
func TestReadTableReaderError(t *testing.T) {
	valid := encode(t, randomTable(t, 64, 100, 3))
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(valid[:500]), iotest.ErrReader(boom))
	_, err := ReadTable(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrTruncated) || !strings.HasPrefix(err.Error(), "hashing: ") {
		t.Fatalf("got %v", err)
	}
}

// TestWriteToError reports the writer's failure and how far it got.
func TestWriteToError(t *testing.T) {
	tb := randomTable(t, 64, 3*chunkUsers, 3)
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, left: 100_000}
	n, err := tb.WriteTo(w)
	if !errors.Is(err, errFull) || n != int64(buf.Len()) || n > 100_000 {
		t.Fatalf("WriteTo = %d, %v; buffer holds %d", n, err, buf.Len())
	}
}

var errFull = errors.New("device full")

type limitWriter struct {
	w    io.Writer
	left int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		n, _ := l.w.Write(p[:l.left])
		l.left = 0
		return n, errFull
	}
	l.left -= len(p)
	return l.w.Write(p)
}

// FuzzReadTable checks that ReadTable never panics, that the sized and the
// streaming paths agree on what they accept, and that every table accepted
// writes back byte for byte.
func FuzzReadTable(f *testing.F) {
	valid := encode(f, randomTable(f, 64, 100, 3)) // the file corruptions is written for
	f.Add(valid)
	f.Add(encode(f, randomTable(f, 1, 0, 1)))
	f.Add(encode(f, randomTable(f, 16, 3, 1)))
	f.Add([]byte{})
	f.Add([]byte(magic))
	for _, tc := range corruptions {
		data := tc.damage(bytes.Clone(valid))
		if tc.reseal {
			reseal(data)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := ReadTable(bytes.NewReader(data))
		_, err2 := ReadTable(unsized{bytes.NewReader(data)})
		if (err == nil) != (err2 == nil) {
			t.Fatalf("sized reader: %v; streaming reader: %v", err, err2)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "hashing: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if again := encode(t, tb); !bytes.Equal(again, data) {
			t.Fatalf("accepted table does not round-trip: %d bytes in, %d out", len(data), len(again))
		}
		hashes, buckets := usersOf(tb)
		for i, h := range hashes {
			if b, ok := tb.Lookup(h); !ok || b != uint32(buckets[i]) {
				t.Fatalf("Lookup(%016x) = %d, %v", h, b, ok)
			}
		}
	})
}
