package queue

import (
	"os"
	"sync"
	"time"
)

// ID names one message for as long as its queue file exists. It is also
// the file name, so it is restricted to [0-9A-Za-z].
type ID string

// The alphabet is in ASCII order, so fixed-width base-62 numbers sort
// lexically in numeric order.
const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	idTimeLen = 9  // microseconds since 1970: 62^9 µs lasts until the year 2398
	idMinLen  = 10 // time plus at least one character of tail
	idMaxLen  = 24
)

// appendBase62 appends v in base 62. With width > 0 the number is padded
// with leading zeros to width characters (the high digits are dropped if
// v does not fit, which for the time field cannot happen before 2398).
func appendBase62(b []byte, v uint64, width int) []byte {
	var tmp [12]byte
	i := len(tmp)
	for v > 0 || i == len(tmp) {
		i--
		tmp[i] = idAlphabet[v%62]
		v /= 62
	}
	digits := tmp[i:]
	if width > 0 {
		if len(digits) > width {
			digits = digits[len(digits)-width:]
		}
		for n := len(digits); n < width; n++ {
			b = append(b, '0')
		}
	}
	return append(b, digits...)
}

// idClock hands out strictly increasing microsecond stamps within this
// process, so that two IDs made by one process never share a time part,
// even if the wall clock steps back.
type idClock struct {
	mu   sync.Mutex
	last uint64
}

func (c *idClock) next() uint64 {
	now := uint64(time.Now().UnixMicro())
	c.mu.Lock()
	defer c.mu.Unlock()
	if now <= c.last {
		now = c.last + 1
	}
	c.last = now
	return now
}

// processClock is process-wide by nature: together with the pid it is what
// makes NewID unique between processes.
var processClock idClock

// NewID returns an identifier made of the time in microseconds (9 base-62
// characters, strictly increasing within the process) and the process ID
// (4 base-62 characters): 13 characters, unique among the processes of a
// host that are alive at the same time, and lexically sortable in time
// order.
//
// Queue files do not use NewID: Store.Create names each file after the
// time and its inode number, as Postfix does, so that the kernel settles
// collisions for as long as the file exists (see the package doc). NewID
// is for temporary names and other identifiers not backed by a queue file.
func NewID() ID {
	b := make([]byte, 0, 13)
	b = appendBase62(b, processClock.next(), idTimeLen)
	b = appendBase62(b, uint64(os.Getpid()), 4)
	return ID(b)
}

// fileID returns the queue ID for a file created at the given microsecond
// with the given inode number: 9 characters of time, then the inode number
// in base 62 without padding.
func fileID(usec uint64, ino uint64) ID {
	b := make([]byte, 0, idTimeLen+11)
	b = appendBase62(b, usec, idTimeLen)
	b = appendBase62(b, ino, 0)
	return ID(b)
}

// ValidID reports whether s has the shape of a queue ID: 10 to 24
// characters of [0-9A-Za-z]. Anything else in a queue directory (temporary
// files, editor backups, junk) is not a message.
func ValidID(s string) bool {
	if len(s) < idMinLen || len(s) > idMaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// Time returns the time encoded in the first nine characters of a valid
// ID, with microsecond precision, or the zero time if id is not valid.
func (id ID) Time() time.Time {
	if !ValidID(string(id)) {
		return time.Time{}
	}
	var v uint64
	for i := 0; i < idTimeLen; i++ {
		c := id[i]
		var d byte
		switch {
		case c <= '9':
			d = c - '0'
		case c <= 'Z':
			d = c - 'A' + 10
		default:
			d = c - 'a' + 36
		}
		v = v*62 + uint64(d)
	}
	return time.UnixMicro(int64(v))
}
