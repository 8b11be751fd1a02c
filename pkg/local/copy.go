package local

// The delivered form of a message, as Postfix's mail_copy writes it: an
// optional mbox "From sender date" line, then Return-Path:, X-Original-To:
// and Delivered-To: as each kind of delivery asks, then the queued
// content, with ">From " quoting and a closing empty line for mbox files.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"postern/pkg/queue"
)

type copyFlags int

const (
	copyFrom       copyFlags = 1 << iota // "From sender  date" first line
	copyReturnPath                       // Return-Path: <sender>
	copyOrigTo                           // X-Original-To: original recipient
	copyDelivered                        // Delivered-To: final recipient
	copyQuote                            // ">From " quoting of body lines
	copyBlank                            // an empty line after the message
)

// copyMbox is the form of UNIX mailbox files (local(8) MAILBOX DELIVERY).
const copyMbox = copyFrom | copyReturnPath | copyOrigTo | copyQuote | copyBlank

// copyHeaders are the values of the prepended lines.
type copyHeaders struct {
	sender, origTo, deliveredTo string
}

// writeDelivered writes m's content to w in the form flags say.
func writeDelivered(w io.Writer, m *queue.Message, h copyHeaders, flags copyFlags) error {
	return writeDeliveredFrom(w, m.Content(), h, flags, time.Now())
}

func writeDeliveredFrom(w io.Writer, content io.Reader, h copyHeaders, flags copyFlags, now time.Time) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	if flags&copyFrom != 0 {
		from := h.sender
		if from == "" {
			from = "MAILER-DAEMON"
		}
		// asctime(3) form, as in Postfix and every mbox reader.
		fmt.Fprintf(bw, "From %s  %s\n", from, now.Format("Mon Jan _2 15:04:05 2006"))
	}
	if flags&copyReturnPath != 0 {
		fmt.Fprintf(bw, "Return-Path: <%s>\n", h.sender)
	}
	if flags&copyOrigTo != 0 {
		fmt.Fprintf(bw, "X-Original-To: %s\n", h.origTo)
	}
	if flags&copyDelivered != 0 {
		fmt.Fprintf(bw, "Delivered-To: %s\n", h.deliveredTo)
	}
	if flags&(copyQuote|copyBlank) == 0 {
		if _, err := io.Copy(bw, content); err != nil {
			return err
		}
		return bw.Flush()
	}
	br := bufio.NewReaderSize(content, 32<<10)
	atStart := true
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if atStart && flags&copyQuote != 0 && strings.HasPrefix(string(line), "From ") {
				bw.WriteByte('>')
			}
			bw.Write(line)
			atStart = line[len(line)-1] == '\n'
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if flags&copyBlank != 0 {
		if !atStart {
			bw.WriteByte('\n')
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
