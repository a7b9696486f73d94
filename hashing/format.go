package hashing

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// File format constants; FORMAT.md describes the layout.
const (
	magic          = "SRTABLE\x00"
	formatVersion  = 1
	hashIDXXHash64 = 1 // xxhash64 of the key's UTF-8 bytes, seed 0
	headerSize     = 32
	trailerSize    = 8
	bytesPerUser   = 10 // one uint64 hash and one uint16 bucket

	// chunkUsers is how many values are encoded or decoded per I/O call:
	// 64 KiB of hashes, so memory use while streaming stays flat.
	chunkUsers = 8 << 10
	// initialUsers caps the first allocation when the reader's size is
	// unknown, so a corrupt user count cannot make ReadTable allocate
	// gigabytes before it has read a byte of the body; slices then grow
	// with the data actually present.
	initialUsers = 64 << 10
)

// Errors ReadTable returns for a file it rejects; each is wrapped with the
// detail (index, value found) and can be tested with errors.Is. A bucket
// count out of range is ErrBucketCount and a bucket number >= N is
// ErrBucketRange, as for the builder.
var (
	ErrBadMagic           = errors.New("hashing: bad magic, not a socialroute table file")
	ErrUnsupportedVersion = errors.New("hashing: unsupported table format version")
	ErrUnknownHash        = errors.New("hashing: unknown hash id")
	ErrUserCount          = errors.New("hashing: implausible user count")
	ErrNotAscending       = errors.New("hashing: key hashes not strictly ascending")
	ErrTruncated          = errors.New("hashing: truncated table file")
	ErrChecksum           = errors.New("hashing: checksum mismatch")
	ErrTrailingData       = errors.New("hashing: trailing data after the checksum")
)

// Interface guard: a Table streams itself with io.Copy and friends.
var _ io.WriterTo = (*Table)(nil)

// WriteTo writes the table to w in the file format described in FORMAT.md
// and returns the number of bytes written. ReadTable reads it back. Writing
// a nil table is an error: it has no bucket count to record.
func (t *Table) WriteTo(w io.Writer) (int64, error) {
	if t == nil {
		return 0, errors.New("hashing: cannot write a nil table")
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, chunkUsers*8)
	d := xxhash.New()
	emit := func(p []byte) error {
		_, _ = d.Write(p) // never fails
		_, err := bw.Write(p)
		return err
	}
	fail := func(err error) (int64, error) {
		return cw.n, fmt.Errorf("hashing: write table: %w", err)
	}

	buf := make([]byte, 0, chunkUsers*8)
	buf = appendHeader(buf, t.n, uint64(t.users))
	if err := emit(buf); err != nil {
		return fail(err)
	}
	// The slots hold hash and bucket together; the file wants all the
	// hashes, then all the buckets, so walk them twice.
	buf = buf[:0]
	for h := range t.all() {
		buf = binary.LittleEndian.AppendUint64(buf, h)
		if len(buf) == cap(buf) {
			if err := emit(buf); err != nil {
				return fail(err)
			}
			buf = buf[:0]
		}
	}
	for _, b := range t.all() {
		buf = binary.LittleEndian.AppendUint16(buf, b)
		if len(buf) == cap(buf) {
			if err := emit(buf); err != nil {
				return fail(err)
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		if err := emit(buf); err != nil {
			return fail(err)
		}
	}
	buf = binary.LittleEndian.AppendUint64(buf[:0], d.Sum64())
	if _, err := bw.Write(buf); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	return cw.n, nil
}

// appendHeader appends the 32-byte file header.
func appendHeader(buf []byte, n uint32, users uint64) []byte {
	buf = append(buf, magic...)
	buf = binary.LittleEndian.AppendUint32(buf, formatVersion)
	buf = binary.LittleEndian.AppendUint32(buf, hashIDXXHash64)
	buf = binary.LittleEndian.AppendUint32(buf, n)
	buf = binary.LittleEndian.AppendUint32(buf, 0) // reserved
	return binary.LittleEndian.AppendUint64(buf, users)
}

// countingWriter counts the bytes that reached the underlying writer, which
// is what WriteTo reports.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadTable reads a table in the format WriteTo writes, streaming through a
// buffered reader, and verifies everything before returning it: magic,
// version, hash id, bucket count, user count, checksum, that nothing
// follows the checksum, that hashes are strictly ascending and that every
// bucket is below N. Errors start with "hashing: " and wrap one of the
// Err* values of this package, or the reader's own error.
//
// When r is an *os.File, *bytes.Reader, *bytes.Buffer or *strings.Reader,
// the user count is checked against the bytes actually left before
// anything is allocated for the body. For other readers memory grows with
// the data read, so a corrupt count fails as a truncated file instead of an
// enormous allocation.
func ReadTable(r io.Reader) (*Table, error) {
	remaining, sized := knownRemaining(r)
	br := bufio.NewReaderSize(r, chunkUsers*8)

	var hdr [headerSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, readError(err, "header")
	}
	if string(hdr[:8]) != magic {
		return nil, fmt.Errorf("%w: file starts with %q, want %q", ErrBadMagic, hdr[:8], magic)
	}
	le := binary.LittleEndian
	if v := le.Uint32(hdr[8:]); v != formatVersion {
		return nil, fmt.Errorf("%w %d, this reader knows version %d", ErrUnsupportedVersion, v, formatVersion)
	}
	if id := le.Uint32(hdr[12:]); id != hashIDXXHash64 {
		return nil, fmt.Errorf("%w %d, this reader knows %d (xxhash64, seed 0)", ErrUnknownHash, id, hashIDXXHash64)
	}
	n := le.Uint32(hdr[16:])
	if n < 1 || n > MaxBuckets {
		return nil, fmt.Errorf("%w: header says %d", ErrBucketCount, n)
	}
	if res := le.Uint32(hdr[20:]); res != 0 {
		// A writer that gives these bytes a meaning also raises the
		// version; ignoring them here could misread such a file.
		return nil, fmt.Errorf("%w: reserved header field is %#x, want 0", ErrUnsupportedVersion, res)
	}
	users := le.Uint64(hdr[24:])
	if users > MaxUsers || users > uint64(math.MaxInt)/bytesPerUser {
		return nil, fmt.Errorf("%w: header claims %d users, more than the maximum %d", ErrUserCount, users, uint64(MaxUsers))
	}
	need := users*bytesPerUser + trailerSize
	if sized && (remaining < headerSize || uint64(remaining-headerSize) < need) { // (a file that grew past its Stat size must not wrap to huge)
		return nil, &multiError{
			msg: fmt.Sprintf("hashing: implausible user count or truncated table file: header claims %d users, "+
				"which need %d bytes after the header, but %d are present", users, need, remaining-headerSize),
			errs: []error{ErrUserCount, ErrTruncated},
		}
	}

	d := xxhash.New()
	_, _ = d.Write(hdr[:])
	capUsers := int(users)
	if !sized {
		capUsers = min(capUsers, initialUsers)
	}
	buf := make([]byte, chunkUsers*8)

	hashes := make([]uint64, 0, capUsers)
	for left := int(users); left > 0; {
		k := min(left, chunkUsers)
		p := buf[:k*8]
		if _, err := io.ReadFull(br, p); err != nil {
			return nil, readError(err, "key hashes")
		}
		_, _ = d.Write(p)
		hashes = slices.Grow(hashes, k)
		for i := 0; i < len(p); i += 8 {
			hashes = append(hashes, le.Uint64(p[i:]))
		}
		left -= k
	}

	buckets := make([]uint16, 0, capUsers)
	for left := int(users); left > 0; {
		k := min(left, chunkUsers)
		p := buf[:k*2]
		if _, err := io.ReadFull(br, p); err != nil {
			return nil, readError(err, "buckets")
		}
		_, _ = d.Write(p)
		buckets = slices.Grow(buckets, k)
		for i := 0; i < len(p); i += 2 {
			buckets = append(buckets, le.Uint16(p[i:]))
		}
		left -= k
	}

	var tr [trailerSize]byte
	if _, err := io.ReadFull(br, tr[:]); err != nil {
		return nil, readError(err, "checksum")
	}
	if got, want := le.Uint64(tr[:]), d.Sum64(); got != want {
		return nil, fmt.Errorf("%w: file records %016x, contents hash to %016x", ErrChecksum, got, want)
	}
	if _, err := br.ReadByte(); err == nil {
		return nil, fmt.Errorf("%w: file goes on after %d bytes", ErrTrailingData, headerSize+need)
	} else if err != io.EOF {
		return nil, fmt.Errorf("hashing: read table: %w", err)
	}

	// The checksum matched, so what follows catches a bad writer, not a
	// damaged file.
	for i := 1; i < len(hashes); i++ {
		if hashes[i] <= hashes[i-1] {
			return nil, fmt.Errorf("%w: index %d holds %016x after %016x", ErrNotAscending, i, hashes[i], hashes[i-1])
		}
	}
	for i, b := range buckets {
		if uint32(b) >= n {
			return nil, fmt.Errorf("%w: index %d holds bucket %d, table has %d buckets", ErrBucketRange, i, b, n)
		}
	}
	// The table lays the users out in slots of its own; hashes and buckets
	// are garbage after this.
	return newTable(n, hashes, buckets), nil
}

// knownRemaining returns how many bytes r has left, for the readers where
// that is known without consuming anything.
func knownRemaining(r io.Reader) (int64, bool) {
	switch v := r.(type) {
	case *bytes.Reader:
		return int64(v.Len()), true
	case *bytes.Buffer:
		return int64(v.Len()), true
	case *strings.Reader:
		return int64(v.Len()), true
	case *os.File:
		fi, err := v.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		off, err := v.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return 0, false
		}
		return fi.Size() - off, true
	}
	return 0, false
}

// readError turns an early end of input into ErrTruncated, naming the part
// of the file that was cut, and wraps any other read error.
func readError(err error, part string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: file ends inside the %s", ErrTruncated, part)
	}
	return fmt.Errorf("hashing: read table %s: %w", part, err)
}

// multiError is an error that is several of the sentinel errors at once.
type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string   { return e.msg }
func (e *multiError) Unwrap() []error { return e.errs }

// LoadTable reads the table file at path (see ReadTable). Errors name the
// path and wrap the underlying error.
func LoadTable(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hashing: load table: %w", err)
	}
	defer f.Close()
	t, err := ReadTable(f)
	if err != nil {
		return nil, &pathError{path: path, err: err}
	}
	return t, nil
}

// pathError puts the file name into a ReadTable error without repeating
// the package prefix: "hashing: load table t.srt: checksum mismatch: ...".
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string {
	return "hashing: load table " + e.path + ": " + strings.TrimPrefix(e.err.Error(), "hashing: ")
}

func (e *pathError) Unwrap() error { return e.err }
