package queue

import "postern/pkg/dirsync"

// errNoDirRead reports a directory the process may write but not read, so
// it cannot open it to fsync it: maildrop/ (mode 0730) for sendmail.
var errNoDirRead = dirsync.ErrNoRead

// fsyncDir makes the entries of directory dir durable.
func fsyncDir(dir string) error { return dirsync.Fsync(dir) }
