package queue

import (
	"errors"
	"fmt"
)

// RecType is the type byte that starts every record. The table in the
// package doc says where each may appear.
type RecType byte

const (
	RecVersion   RecType = 'V' // format version, decimal; always the first record
	RecTime      RecType = 'T' // arrival time, decimal Unix nanoseconds
	RecSender    RecType = 'S' // envelope sender, may be empty (null sender)
	RecAttr      RecType = 'A' // name=value, a named Envelope field (see attribute names)
	RecUserAttr  RecType = 'U' // name=value, one entry of Envelope.Attrs
	RecRecipient RecType = 'R' // status byte, then Addr NUL Orig NUL Notify NUL ORcpt
	RecMessage   RecType = 'M' // start of the content segment; empty
	RecContent   RecType = 'C' // content bytes, exactly as given to Writer.Write
	RecExtracted RecType = 'X' // start of the extracted segment; empty
	RecEnd       RecType = 'E' // end of file; empty; nothing may follow
)

// Version is the highest format version this package reads. A writer
// names in the RecVersion record the lowest version whose grammar the file
// needs (a file without version 2's additions says 1, so older readers
// still read it). A reader rejects any version above Version: a new record
// type, attribute name or field layout needs a new version.
const Version = 2

const (
	// maxContentRecord bounds a RecContent record. The writer emits
	// chunkSize; the reader accepts up to this much.
	maxContentRecord = 1 << 20
	// maxMetaRecord bounds every other record: addresses, attribute
	// values and the like.
	maxMetaRecord = 1 << 16
	// chunkSize is the size of the content records the writer emits.
	chunkSize = 64 << 10
	// maxLenBytes is the most bytes a length may take: 4 × 7 = 28 bits.
	maxLenBytes = 4
)

// RcptStatus is the first data byte of a recipient record, the only byte of
// a queue file that is ever rewritten.
type RcptStatus byte

const (
	Pending   RcptStatus = '-' // 0x2d: not yet delivered
	Delivered RcptStatus = 'D' // 0x44: done, delivered (or discarded on purpose)
	Failed    RcptStatus = 'F' // 0x46: done, failed permanently; a bounce is owed
	Warned    RcptStatus = 'W' // 0x57: not yet delivered; a delay warning covering it was sent
	Bounced   RcptStatus = 'B' // 0x42: done, failed permanently; its bounce was queued
)

// Valid reports whether st is one of the defined status values.
func (st RcptStatus) Valid() bool {
	return st == Pending || st == Delivered || st == Failed || st == Warned || st == Bounced
}

// Done reports whether the recipient needs no further delivery attempt.
func (st RcptStatus) Done() bool { return st == Delivered || st == Failed || st == Bounced }

func (st RcptStatus) String() string {
	switch st {
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	case Warned:
		return "warned"
	case Bounced:
		return "bounced"
	}
	return fmt.Sprintf("RcptStatus(%#02x)", byte(st))
}

// Names of RecAttr records. They are Postfix's attribute names where
// Postfix has one.
const (
	attrClientName = "client_name"
	attrClientAddr = "client_address"
	attrHeloName   = "helo_name"
	attrProtocol   = "protocol_name"
	attrAuthUser   = "sasl_username"
	attrBodyType   = "body_type"
	attrSMTPUTF8   = "smtputf8"
	attrDSNRet     = "dsn_ret"
	attrDSNEnvID   = "dsn_envid"
)

// ErrCorrupt is wrapped by every error that reports a queue file which is
// malformed, truncated or incomplete (no END record). Such a file must not
// be delivered; qmgr moves it to corrupt/.
var ErrCorrupt = errors.New("corrupt queue file")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// appendHeader appends a record header: the type byte, then the length in
// 7-bit groups, least significant group first, the high bit set on every
// byte but the last.
func appendHeader(b []byte, t RecType, n int) []byte {
	b = append(b, byte(t))
	for n >= 0x80 {
		b = append(b, byte(n&0x7f)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// parseLen decodes a record length from b. It returns the length and the
// number of bytes used, or an error if the encoding is longer than
// maxLenBytes, not minimal, or cut short by the end of b.
func parseLen(b []byte) (n int, used int, err error) {
	shift := 0
	for i := 0; i < maxLenBytes; i++ {
		if i >= len(b) {
			return 0, 0, corruptf("truncated record length")
		}
		c := b[i]
		n |= int(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, corruptf("non-minimal record length")
			}
			return n, i + 1, nil
		}
	}
	return 0, 0, corruptf("record length too long")
}
