package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	edt     = time.FixedZone("EDT", -4*3600)
	arrival = time.Date(2024, 9, 11, 18, 5, 54, 0, edt)
	now     = time.Date(2024, 9, 12, 9, 7, 3, 0, edt)
)

const origMsg = "Received: by mail.example.org (Postern, from userid 1000)\r\n" +
	"\tid 4X3vqF3RdBz5Yqn; Wed, 11 Sep 2024 18:05:54 -0400 (EDT)\r\n" +
	"From: Alice <alice@example.org>\r\n" +
	"To: bob@example.com, carol@example.net\r\n" +
	"Subject: lunch\r\n" +
	"Message-ID: <20240911220554.4X3vqF3RdBz5Yqn@mail.example.org>\r\n" +
	"Date: Wed, 11 Sep 2024 18:05:54 -0400 (EDT)\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n" +
	"--\r\n" +
	"Alice\r\n"

func baseNotice(k Kind) *Notice {
	return &Notice{
		Kind:        k,
		Hostname:    "mail.example.org",
		Sender:      "alice@example.org",
		QueueID:     "4X3vqF3RdBz5Yqn",
		ArrivalDate: arrival,
		SizeLimit:   50000,
		Date:        now,
		MessageID:   "<20240912130703.4X4Gm33Wbgz9vx@mail.example.org>",
	}
}

var smtpFailure = Recipient{
	Addr:        "bob@example.com",
	ORcpt:       "rfc822;bob@example.com",
	Status:      "5.1.1",
	Reason:      "host mx.example.com[192.0.2.1] said: 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
	Diagnostic:  "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
	RemoteMTA:   "mx.example.com",
	LastAttempt: now,
}

var localFailure = Recipient{
	Addr:   "carol@mail.example.org",
	Orig:   "sales@example.org",
	Status: "5.2.2",
	Reason: "cannot update mailbox /var/mail/carol for user carol. error writing message: File too large",
}

var cases = []struct {
	name     string
	notice   func() *Notice
	original string
	noOrig   bool
	part3    string // expected Content-Type of the third part
}{
	{
		name: "failure",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.EnvID = "QQ314159"
			n.Recipients = []Recipient{smtpFailure, localFailure}
			return n
		},
		original: origMsg,
		part3:    "message/rfc822",
	},
	{
		name: "delay",
		notice: func() *Notice {
			n := baseNotice(Delay)
			n.DelayWarningTime = 4 * time.Hour
			n.MaxQueueLifetime = 5 * 24 * time.Hour
			n.Recipients = []Recipient{{
				Addr:        "bob@example.com",
				Status:      "4.4.1",
				Reason:      "connect to mx.example.com[192.0.2.1]:25: Connection timed out",
				LastAttempt: now,
			}}
			return n
		},
		original: origMsg,
		part3:    "text/rfc822-headers",
	},
	{
		name: "success",
		notice: func() *Notice {
			n := baseNotice(Success)
			n.Recipients = []Recipient{
				{Addr: "carol@mail.example.org", Orig: "carol@example.org", Action: "delivered", Status: "2.0.0", Reason: "delivered to mailbox"},
				{Addr: "bob@example.com", Action: "relayed", Status: "2.0.0", RemoteMTA: "mx.example.com",
					Reason:     "delivery via mx.example.com[192.0.2.1]:25: 250 2.0.0 Ok: queued as 4X4GmB",
					Diagnostic: "smtp; 250 2.0.0 Ok: queued as 4X4GmB"},
			}
			return n
		},
		original: origMsg,
		part3:    "text/rfc822-headers",
	},
	{
		// sendmail -v: every outcome of the attempt, headers returned
		// even with RET=FULL.
		name: "trace",
		notice: func() *Notice {
			n := baseNotice(Trace)
			n.Return = ReturnHeaders
			n.Recipients = []Recipient{
				{Addr: "carol@mail.example.org", Action: "delivered", Status: "2.0.0", Reason: "delivered to maildir", LastAttempt: now},
				{Addr: "bob@example.com", Action: "delayed", Status: "4.4.1",
					Reason: "connect to mx.example.com[192.0.2.1]:25: Connection timed out", LastAttempt: now},
				smtpFailure,
			}
			n.Recipients[2].Action = "failed"
			return n
		},
		original: origMsg,
		part3:    "text/rfc822-headers",
	},
	{
		name: "ret-hdrs",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.Return = ReturnHeaders
			n.Recipients = []Recipient{smtpFailure}
			return n
		},
		original: origMsg,
		part3:    "text/rfc822-headers",
	},
	{
		// Larger than bounce_size_limit: headers only, as Postfix.
		name: "truncated",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.SizeLimit = 400
			n.Recipients = []Recipient{smtpFailure}
			return n
		},
		original: origMsg + strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 20),
		part3:    "text/rfc822-headers",
	},
	{
		// Even the header block exceeds the limit: whole fields only.
		name: "truncated-headers",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.SizeLimit = 150
			n.Recipients = []Recipient{smtpFailure}
			return n
		},
		original: origMsg,
		part3:    "text/rfc822-headers",
	},
	{
		name: "postmaster",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.Postmaster = true
			n.To = "postmaster@mail.example.org"
			n.Return = ReturnHeaders
			n.Recipients = []Recipient{smtpFailure}
			return n
		},
		original: origMsg,
		part3:    "text/rfc822-headers",
	},
	{
		name: "smtputf8",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.SMTPUTF8 = true
			n.Sender = "álvaro@exämple.org"
			n.Recipients = []Recipient{{
				Addr:   "jürgen@beispiel.de",
				ORcpt:  "utf-8;jürgen@beispiel.de",
				Status: "5.1.1",
				Reason: "unknown user: \"jürgen\"",
			}}
			return n
		},
		original: "From: álvaro@exämple.org\nTo: jürgen@beispiel.de\nSubject: grüße\n\nHallo Jürgen\n",
		part3:    "message/global",
	},
	{
		// Without SMTPUTF8 non-ASCII and control characters are masked.
		name: "masked",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.Recipients = []Recipient{{
				Addr:   "jürgen@beispiel.de",
				Status: "5.1.1",
				Reason: "said: 550 no\r\nInjected: header\x00",
			}}
			return n
		},
		original: origMsg,
		part3:    "message/rfc822",
	},
	{
		name: "unavailable",
		notice: func() *Notice {
			n := baseNotice(Failure)
			n.Recipients = []Recipient{localFailure}
			return n
		},
		noOrig: true,
		part3:  "message/rfc822",
	},
}

func TestGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.notice()
			var orig io.Reader
			if !c.noOrig {
				orig = strings.NewReader(c.original)
			}
			var out bytes.Buffer
			if err := Write(&out, n, orig); err != nil {
				t.Fatal(err)
			}
			p := parse(t, out.Bytes(), n)
			if p.part3Type != c.part3 {
				t.Errorf("third part is %s, want %s", p.part3Type, c.part3)
			}
			golden := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", golden, out.Bytes())
			}
		})
	}
}

// parsed is what parse learns from a notice.
type parsed struct {
	header     mail.Header
	boundary   string
	human      string
	perMessage textproto.MIMEHeader
	perRcpt    []textproto.MIMEHeader
	part3Type  string
	part3      []byte
}

// parse reads msg back with the standard library's MIME reader and checks
// the structure RFC 3464 and RFC 6522 require, failing t when it is broken.
func parse(t testing.TB, msg []byte, n *Notice) *parsed {
	t.Helper()
	if hdr, _, _ := bytes.Cut(msg, []byte("\n\n")); bytes.ContainsRune(hdr, '\r') {
		t.Error("CR in the header")
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("top-level header: %v", err)
	}
	p := &parsed{header: m.Header}
	for _, h := range []string{"From", "To", "Subject", "Date", "Auto-Submitted", "MIME-Version"} {
		if m.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	p.boundary = params["boundary"]
	if len(p.boundary) > 70 {
		t.Errorf("boundary longer than 70 characters: %q", p.boundary)
	}
	mr := multipart.NewReader(m.Body, p.boundary)
	var parts []*multipart.Part
	var bodies [][]byte
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", len(parts)+1, err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("part %d body: %v", len(parts)+1, err)
		}
		parts = append(parts, part)
		bodies = append(bodies, b)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	for i, b := range bodies {
		if bytes.Contains(b, []byte(p.boundary)) {
			t.Errorf("part %d contains the boundary", i+1)
		}
	}

	mt1, _, _ := mime.ParseMediaType(parts[0].Header.Get("Content-Type"))
	if mt1 != "text/plain" {
		t.Errorf("first part is %q", mt1)
	}
	p.human = string(bodies[0])

	mt2, _, _ := mime.ParseMediaType(parts[1].Header.Get("Content-Type"))
	want2 := "message/delivery-status"
	if n.SMTPUTF8 {
		want2 = "message/global-delivery-status"
	}
	if mt2 != want2 {
		t.Errorf("second part is %q, want %q", mt2, want2)
	}
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(bodies[1])))
	p.perMessage, err = tr.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("per-message fields: %v", err)
	}
	if got := p.perMessage.Get("Reporting-MTA"); !strings.HasPrefix(got, "dns; ") {
		t.Errorf("Reporting-MTA %q", got)
	}
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			p.perRcpt = append(p.perRcpt, h)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("per-recipient fields: %v", err)
		}
	}
	if len(p.perRcpt) != len(n.Recipients) {
		t.Fatalf("%d per-recipient blocks, want %d", len(p.perRcpt), len(n.Recipients))
	}
	for i, h := range p.perRcpt {
		fr := h.Get("Final-Recipient")
		if !strings.HasPrefix(fr, "rfc822; ") && !strings.HasPrefix(fr, "utf-8; ") {
			t.Errorf("recipient %d: Final-Recipient %q", i, fr)
		}
		if !validStatus(h.Get("Status")) {
			t.Errorf("recipient %d: Status %q", i, h.Get("Status"))
		}
		switch h.Get("Action") {
		case "failed", "delayed", "delivered", "relayed", "expanded":
		default:
			t.Errorf("recipient %d: Action %q", i, h.Get("Action"))
		}
		if n.Kind == Failure && h.Get("Action") != "failed" {
			t.Errorf("recipient %d: Action %q in a failure notice", i, h.Get("Action"))
		}
		if h.Get("Diagnostic-Code") == "" {
			t.Errorf("recipient %d: no Diagnostic-Code", i)
		}
	}

	p.part3Type, _, _ = mime.ParseMediaType(parts[2].Header.Get("Content-Type"))
	p.part3 = bodies[2]
	for i, b := range bodies[:2] {
		if bytes.ContainsRune(b, '\r') {
			t.Errorf("part %d has a CR", i+1)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) > 998 {
				t.Errorf("part %d has a line of %d bytes", i+1, len(l))
			}
		}
	}
	return p
}

func TestFields(t *testing.T) {
	n := cases[0].notice()
	var out bytes.Buffer
	if err := Write(&out, n, strings.NewReader(origMsg)); err != nil {
		t.Fatal(err)
	}
	p := parse(t, out.Bytes(), n)

	for h, want := range map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@mail.example.org>",
		"To":             "alice@example.org",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Auto-Submitted": "auto-replied",
		"In-Reply-To":    "<20240911220554.4X3vqF3RdBz5Yqn@mail.example.org>",
		"References":     "<20240911220554.4X3vqF3RdBz5Yqn@mail.example.org>",
	} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	for f, want := range map[string]string{
		"Reporting-MTA":        "dns; mail.example.org",
		"Original-Envelope-Id": "QQ314159",
		"X-Postern-Queue-ID":   "4X3vqF3RdBz5Yqn",
		"X-Postern-Sender":     "rfc822; alice@example.org",
		"Arrival-Date":         "Wed, 11 Sep 2024 18:05:54 -0400 (EDT)",
	} {
		if got := p.perMessage.Get(f); got != want {
			t.Errorf("%s: %q, want %q", f, got, want)
		}
	}
	r0, r1 := p.perRcpt[0], p.perRcpt[1]
	for f, want := range map[string]string{
		"Final-Recipient":    "rfc822; bob@example.com",
		"Original-Recipient": "rfc822; bob@example.com",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx.example.com",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		"Last-Attempt-Date":  "Thu, 12 Sep 2024 09:07:03 -0400 (EDT)",
	} {
		if got := r0.Get(f); got != want {
			t.Errorf("recipient 1 %s: %q, want %q", f, got, want)
		}
	}
	for f, want := range map[string]string{
		"Final-Recipient":    "rfc822; carol@mail.example.org",
		"Original-Recipient": "rfc822; sales@example.org",
		"Status":             "5.2.2",
		"Diagnostic-Code":    "X-Postern; cannot update mailbox /var/mail/carol for user carol. error writing message: File too large",
	} {
		if got := r1.Get(f); got != want {
			t.Errorf("recipient 2 %s: %q, want %q", f, got, want)
		}
	}
	if r1.Get("Remote-MTA") != "" || r0.Get("Will-Retry-Until") != "" {
		t.Error("field that does not apply is present")
	}
	for _, s := range []string{
		"This is the mail system at host mail.example.org.",
		"I'm sorry to have to inform you that your message could not",
		"\n<bob@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1\n    <bob@example.com>: Recipient address rejected:",
		"\n<carol@mail.example.org> (expanded from <sales@example.org>): cannot update\n    mailbox",
	} {
		if !strings.Contains(p.human, s) {
			t.Errorf("human part lacks %q:\n%s", s, p.human)
		}
	}
	want := "Return-Path: <alice@example.org>\n" + strings.ReplaceAll(origMsg, "\r\n", "\n")
	if string(p.part3) != want {
		t.Errorf("returned message:\n%q\nwant\n%q", p.part3, want)
	}
}

// TestTraceFields: the report of "sendmail -v" has Postfix's
// verify_template texts, keeps each recipient's action, derives a missing
// status from it, and returns "Message Headers", not "Undelivered".
func TestTraceFields(t *testing.T) {
	n := baseNotice(Trace)
	n.Recipients = []Recipient{
		{Addr: "carol@mail.example.org", Reason: "delivered to maildir"},
		{Addr: "dave@example.net", Action: "relayed", Status: "2.0.0", RemoteMTA: "mx.example.net", Diagnostic: "smtp; 250 2.0.0 Ok"},
		{Addr: "bob@example.com", Action: "delayed", Reason: "connect to mx.example.com[192.0.2.1]:25: Connection timed out"},
		{Addr: "eve@example.org", Action: "failed", Reason: "unknown user"},
	}
	var out bytes.Buffer
	if err := Write(&out, n, strings.NewReader(origMsg)); err != nil {
		t.Fatal(err)
	}
	p := parse(t, out.Bytes(), n)
	if got := p.header.Get("Subject"); got != "Mail Delivery Status Report" {
		t.Errorf("Subject %q", got)
	}
	if got := p.header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted %q", got)
	}
	want := "This is the mail system at host mail.example.org.\n\n" +
		"Enclosed is the mail delivery report that you requested.\n\n" +
		"                   The mail system\n\n" +
		"<carol@mail.example.org>: delivered to maildir\n"
	if !strings.HasPrefix(p.human, want) {
		t.Errorf("human part:\n%s\nwant it to start with\n%s", p.human, want)
	}
	for i, w := range []struct{ action, status string }{
		{"delivered", "2.0.0"}, {"relayed", "2.0.0"}, {"delayed", "4.0.0"}, {"failed", "5.0.0"},
	} {
		h := p.perRcpt[i]
		if h.Get("Action") != w.action || h.Get("Status") != w.status {
			t.Errorf("recipient %d: Action %q Status %q, want %q %q", i+1, h.Get("Action"), h.Get("Status"), w.action, w.status)
		}
		if h.Get("Will-Retry-Until") != "" {
			t.Errorf("recipient %d: Will-Retry-Until in a report", i+1)
		}
	}
	if got := p.perRcpt[1].Get("Remote-MTA"); got != "dns; mx.example.net" {
		t.Errorf("Remote-MTA %q", got)
	}
	if p.part3Type != "text/rfc822-headers" {
		t.Errorf("third part %s, want the headers", p.part3Type)
	}
	if !bytes.Contains(out.Bytes(), []byte("Content-Description: Message Headers\n")) {
		t.Error("third part not described as Message Headers")
	}
	if (Notice{Kind: Trace + 1}).Kind.String() != "Kind(4)" || Trace.String() != "trace" {
		t.Error("Kind names")
	}
}

func TestDelayFields(t *testing.T) {
	n := cases[1].notice()
	var out bytes.Buffer
	if err := Write(&out, n, strings.NewReader(origMsg)); err != nil {
		t.Fatal(err)
	}
	p := parse(t, out.Bytes(), n)
	if got := p.perRcpt[0].Get("Will-Retry-Until"); got != "Mon, 16 Sep 2024 18:05:54 -0400 (EDT)" {
		t.Errorf("Will-Retry-Until %q", got)
	}
	if got := p.perRcpt[0].Get("Action"); got != "delayed" {
		t.Errorf("Action %q", got)
	}
	for _, s := range []string{
		"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
		"Your message could not be delivered for more than 4 hour(s).",
		"It will be retried until it is 5 day(s) old.",
	} {
		if !strings.Contains(p.human, s) {
			t.Errorf("human part lacks %q", s)
		}
	}
	if p.header.Get("Subject") != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q", p.header.Get("Subject"))
	}
	hdr, _, _ := strings.Cut(strings.ReplaceAll(origMsg, "\r\n", "\n"), "\n\n")
	if want := "Return-Path: <alice@example.org>\n" + hdr + "\n"; string(p.part3) != want {
		t.Errorf("returned headers:\n%q\nwant\n%q", p.part3, want)
	}
}

func TestReturn(t *testing.T) {
	hdr, _, _ := strings.Cut(strings.ReplaceAll(origMsg, "\r\n", "\n"), "\n\n")
	full := strings.ReplaceAll(origMsg, "\r\n", "\n")
	tests := []struct {
		kind   Kind
		ret    string
		limit  int64
		orig   string
		want   string // without the Return-Path line
		hdrs   bool
		global bool
	}{
		{Failure, "", 0, origMsg, full, false, false},
		{Failure, "full", 0, origMsg, full, false, false},
		{Failure, "HDRS", 0, origMsg, hdr + "\n", true, false},
		{Delay, "", 0, origMsg, hdr + "\n", true, false},
		{Delay, "FULL", 0, origMsg, full, false, false},
		{Success, "", 0, origMsg, hdr + "\n", true, false},
		{Failure, "", int64(len(origMsg)), origMsg, full, false, false},
		{Failure, "", int64(len(origMsg)) - 1, origMsg, hdr + "\n", true, false},
		// A header block cut by the limit keeps whole fields only: the
		// folded Received: field is dropped rather than cut.
		{Failure, "", 70, origMsg, "", true, false},
		{Failure, "", 120, origMsg, strings.Join(strings.Split(hdr, "\n")[:2], "\n") + "\n", true, false},
		// No header block at all, no final newline, bare CR kept inside.
		{Failure, "", 0, "just text", "just text\n", false, false},
		{Failure, "HDRS", 0, "just text\n\nmore", "", true, false},
		{Failure, "", 0, "", "", false, false},
		{Failure, "", 0, "A: b\r\n\r\nx\ry\r\n", "A: b\n\nx\ry\n", false, false},
		{Failure, "", 0, origMsg, full, false, true},
		{Delay, "", 0, origMsg, hdr + "\n", true, true},
	}
	for i, tt := range tests {
		n := baseNotice(tt.kind)
		n.Return = tt.ret
		n.SizeLimit = tt.limit
		n.SMTPUTF8 = tt.global
		n.Recipients = []Recipient{localFailure}
		var out bytes.Buffer
		if err := Write(&out, n, strings.NewReader(tt.orig)); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		p := parse(t, out.Bytes(), n)
		if want := "Return-Path: <alice@example.org>\n" + tt.want; string(p.part3) != want {
			t.Errorf("%d: returned\n%q\nwant\n%q", i, p.part3, want)
		}
		wantType := map[[2]bool]string{
			{false, false}: "message/rfc822", {true, false}: "text/rfc822-headers",
			{false, true}: "message/global", {true, true}: "message/global-headers",
		}[[2]bool{tt.hdrs, tt.global}]
		if p.part3Type != wantType {
			t.Errorf("%d: third part %s, want %s", i, p.part3Type, wantType)
		}
	}
}

// TestLimitReads checks that Write reads no more of the original than it
// needs.
func TestLimitReads(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	for _, ret := range []string{"", ReturnHeaders} {
		n := baseNotice(Failure)
		n.Return = ret
		n.SizeLimit = 1000
		n.Recipients = []Recipient{localFailure}
		r := &countingReader{r: strings.NewReader(origMsg + big)}
		if err := Write(io.Discard, n, r); err != nil {
			t.Fatal(err)
		}
		if r.n > 1000+4096 {
			t.Errorf("RET=%q: read %d bytes with a limit of 1000", ret, r.n)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestBoundaryCollision(t *testing.T) {
	n := cases[0].notice()
	var first bytes.Buffer
	if err := Write(&first, n, strings.NewReader(origMsg)); err != nil {
		t.Fatal(err)
	}
	b := parse(t, first.Bytes(), n).boundary
	// An original that contains the boundary Postern would choose, and
	// its first alternatives, as delimiter lines.
	hostile := "Subject: trap\n\n--" + b + "\n--" + b + "/1\nContent-Type: text/plain\n\n--" + b + "--\n"
	var out bytes.Buffer
	if err := Write(&out, n, strings.NewReader(hostile)); err != nil {
		t.Fatal(err)
	}
	p := parse(t, out.Bytes(), n)
	if p.boundary == b || p.boundary == b+"/1" {
		t.Errorf("boundary %q not changed", p.boundary)
	}
	if want := "Return-Path: <alice@example.org>\n" + hostile; string(p.part3) != want {
		t.Errorf("returned\n%q\nwant\n%q", p.part3, want)
	}
}

func TestWrap(t *testing.T) {
	long := strings.Repeat("y", 2000)
	tests := []struct{ in, want string }{
		{"short", "short\n"},
		{strings.Repeat("ab ", 30), strings.TrimSpace(strings.Repeat("ab ", 26)) + "\n    " + strings.TrimSpace(strings.Repeat("ab ", 4)) + "\n"},
		{"x " + long, "x\n    " + long[:900] + "\n    " + long[900:1800] + "\n    " + long[1800:] + "\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		writeWrapped(&b, tt.in)
		if b.String() != tt.want {
			t.Errorf("wrap(%.20q...):\n%q\nwant\n%q", tt.in, b.String(), tt.want)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in    string
		utf8  bool
		want  string
		quote string
	}{
		{"user@example.com", false, "user@example.com", "user@example.com"},
		{"a\r\nb\x00c\td", false, "a??b?c d", "\"a??b?c d\""},
		{"jürgen@x", false, "j?rgen@x", "j?rgen@x"},
		{"jürgen@x", true, "jürgen@x", "jürgen@x"},
		{"bad\xffutf8\u0085", true, "bad?utf8?", "bad?utf8?"},
		{"first last@x", false, "first last@x", "\"first last\"@x"},
		{"a\"b\\c@x", false, "a\"b\\c@x", "\"a\\\"b\\\\c\"@x"},
		{".dot@x", false, ".dot@x", "\".dot\"@x"},
	}
	for _, tt := range tests {
		got := clean(tt.in, tt.utf8)
		if got != tt.want {
			t.Errorf("clean(%q, %v) = %q, want %q", tt.in, tt.utf8, got, tt.want)
		}
		if q := quoteAddr(got); q != tt.quote {
			t.Errorf("quoteAddr(%q) = %q, want %q", got, q, tt.quote)
		}
	}
}

func TestErrors(t *testing.T) {
	ok := func() *Notice {
		n := baseNotice(Failure)
		n.Recipients = []Recipient{localFailure}
		return n
	}
	for name, mod := range map[string]func(*Notice){
		"kind":      func(n *Notice) { n.Kind = 7 },
		"host":      func(n *Notice) { n.Hostname = " " },
		"to":        func(n *Notice) { n.Sender, n.To = "", "" },
		"no rcpt":   func(n *Notice) { n.Recipients = nil },
		"rcpt addr": func(n *Notice) { n.Recipients[0].Addr = "" },
		"ret":       func(n *Notice) { n.Return = "BOTH" },
	} {
		n := ok()
		mod(n)
		if err := Write(io.Discard, n, strings.NewReader(origMsg)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := Write(io.Discard, ok(), strings.NewReader(origMsg)); err != nil {
		t.Error(err)
	}
	if err := Write(io.Discard, ok(), iotestErr{}); err == nil {
		t.Error("read error not reported")
	}
	if err := Write(failWriter{}, ok(), strings.NewReader(origMsg)); err == nil {
		t.Error("write error not reported")
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("full") }

func TestDefaults(t *testing.T) {
	n := baseNotice(Success)
	n.Date = time.Time{}
	n.MessageID = ""
	n.To = "someone@example.net"
	n.Recipients = []Recipient{{Addr: "x@example.com", Action: "bogus", Status: "9.9.9"}}
	var out bytes.Buffer
	if err := Write(&out, n, nil); err != nil {
		t.Fatal(err)
	}
	p := parse(t, out.Bytes(), n)
	if p.header.Get("Message-ID") != "" || p.header.Get("To") != "someone@example.net" {
		t.Errorf("headers: %v", p.header)
	}
	r := p.perRcpt[0]
	if r.Get("Action") != "delivered" || r.Get("Status") != "2.0.0" || r.Get("Diagnostic-Code") != "X-Postern; delivery status 2.0.0" {
		t.Errorf("defaults: %v", r)
	}
	if !strings.Contains(string(p.part3), "--- Undelivered message unavailable ---") {
		t.Errorf("no placeholder: %q", p.part3)
	}
}
