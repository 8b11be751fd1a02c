package sendmail

import "fmt"

// Exit codes from sysexits.h, as Postfix's sendmail uses them.
const (
	ExOK          = 0
	ExUsage       = 64 // EX_USAGE: bad command line
	ExDataErr     = 65 // EX_DATAERR: bad input (unparsable header, read error)
	ExNoUser      = 67 // EX_NOUSER: no login name for the uid
	ExUnavailable = 69 // EX_UNAVAILABLE: service down, message too big
	ExSoftware    = 70 // EX_SOFTWARE: internal error, malformed reply
	ExOSErr       = 71 // EX_OSERR: system error (fork, exec)
	ExCantCreat   = 73 // EX_CANTCREAT: cannot create the queue file
	ExIOErr       = 74 // EX_IOERR: output write error
	ExTempFail    = 75 // EX_TEMPFAIL: try again later (write error)
	ExNoPerm      = 77 // EX_NOPERM: not allowed (submit ACL, sender)
)

// Error is a fatal error with the exit status it maps to.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func fatalf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
