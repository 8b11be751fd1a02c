package cleanup

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"postern/pkg/handoff"
	"postern/pkg/queue"
)

func TestChecks(t *testing.T) {
	dir := t.TempDir()
	hc := filepath.Join(dir, "header_checks")
	os.WriteFile(hc, []byte(`/^Subject: reject me/       REJECT
/^Subject: custom/          REJECT 5.7.0 go away
/^Subject: discard/         DISCARD spam
/^Subject: warn/            WARN suspicious
/^Subject: info/            INFO noted
/^Subject: hold/            HOLD look at it
/^X-Drop:/                  IGNORE
/^Subject: prepend/         PREPEND X-Tag: yes
/^X-Old: (.*)/              REPLACE X-New: $1
/^Subject: redirect/        REDIRECT trap@example.net
/^Subject: filter/          FILTER smtp:[127.0.0.1]:10025
/^Subject: folded multi/    WARN folded
`), 0o644)
	bc := filepath.Join(dir, "body_checks")
	os.WriteFile(bc, []byte(`/^bad body/    REJECT
/^secret/       REPLACE [redacted]
/^drop line/    IGNORE
/^hold body/    HOLD
/^late/         REJECT
/^send elsewhere/  REDIRECT body-trap@example.net
/^scan me/      FILTER lmtp:unix:private/scanner
`), 0o644)
	base := "header_checks = regexp:" + hc + "\nbody_checks = pcre:" + bc + "\n"
	tests := []struct {
		name    string
		extra   string
		content string
		status  handoff.Status
		dsn     string
		text    string
		queue   string
		body    string // wanted content (OK only)
		log     string // regexp the log must match
		rcpt    string
		filter  string
		cfilter string // the request's content_filter
		flags   handoff.Flags
		version byte // the queue file's format version, '1' unless set
	}{
		{name: "plain", content: "Subject: hello\n\nbody\n", status: handoff.OK, body: "Subject: hello\n\nbody\n"},
		{name: "reject", content: "Subject: reject me\n\nbody\n", status: handoff.PermFail, dsn: "5.7.1", text: "message content rejected",
			log: `: reject: header Subject: reject me from client\.example\[192\.0\.2\.1\]; from=<s@example\.com> to=<r@example\.net> proto=ESMTP helo=<helo\.example>: 5\.7\.1 message content rejected`},
		{name: "reject text", content: "Subject: custom\n\nbody\n", status: handoff.PermFail, dsn: "5.7.0", text: "go away"},
		{name: "discard", content: "Subject: discard\n\nbody\n", status: handoff.Discarded, log: `: discard: header Subject: discard from .*: spam`},
		{name: "warn", content: "Subject: warn\n\nbody\n", status: handoff.OK, body: "Subject: warn\n\nbody\n", log: `: warning: header Subject: warn from .*: suspicious`},
		{name: "info", content: "Subject: info\n\nbody\n", status: handoff.OK, body: "Subject: info\n\nbody\n", log: `: info: header Subject: info from .*: noted`},
		{name: "hold", content: "Subject: hold\n\nbody\n", status: handoff.OK, queue: queue.Hold, body: "Subject: hold\n\nbody\n", log: `: hold: header Subject: hold from .*: look at it`},
		{name: "ignore", content: "X-Drop: x\n y\nSubject: s\n\nbody\n", status: handoff.OK, body: "Subject: s\n\nbody\n"},
		{name: "prepend", content: "Subject: prepend\n\nbody\n", status: handoff.OK, body: "X-Tag: yes\nSubject: prepend\n\nbody\n"},
		{name: "replace", content: "X-Old: value\n\nbody\n", status: handoff.OK, body: "X-New: value\n\nbody\n"},
		{name: "redirect", content: "Subject: redirect\n\nbody\n", status: handoff.OK, body: "Subject: redirect\n\nbody\n", rcpt: "trap@example.net", log: `: redirect: header Subject: redirect from .*: trap@example\.net`},
		{name: "filter", content: "Subject: filter\n\nbody\n", status: handoff.OK, body: "Subject: filter\n\nbody\n", filter: "smtp:[127.0.0.1]:10025"},
		{name: "folded header joined", content: "Subject: folded\n multi\n\nbody\n", status: handoff.OK, body: "Subject: folded\n multi\n\nbody\n", log: `: warning: header Subject: folded multi from `},
		{name: "body reject", content: "Subject: s\n\nok\nbad body here\n", status: handoff.PermFail, dsn: "5.7.1", log: `: reject: body bad body here from `},
		{name: "body replace and ignore", content: "Subject: s\n\nsecret stuff\ndrop line\nend\n", status: handoff.OK, body: "Subject: s\n\n[redacted]\nend\n"},
		{name: "body hold", content: "Subject: s\n\nhold body\n", status: handoff.OK, queue: queue.Hold, body: "Subject: s\n\nhold body\n"},
		{name: "body size limit", extra: "body_checks_size_limit = 10\n", content: "Subject: s\n\n0123456789\nlate\n", status: handoff.OK, body: "Subject: s\n\n0123456789\nlate\n"},
		{name: "body redirect", content: "Subject: s\n\nhello\nsend elsewhere please\n", status: handoff.OK, body: "Subject: s\n\nhello\nsend elsewhere please\n", rcpt: "body-trap@example.net",
			log: `: redirect: body send elsewhere please from client\.example\[192\.0\.2\.1\]; from=<s@example\.com> to=<r@example\.net> proto=ESMTP helo=<helo\.example>: body-trap@example\.net`},
		{name: "body filter", content: "Subject: s\n\nscan me\n", status: handoff.OK, body: "Subject: s\n\nscan me\n", filter: "lmtp:unix:private/scanner", version: '2',
			log: `: filter: body scan me from .*: lmtp:unix:private/scanner`},
		{name: "body filter overrides content_filter", cfilter: "smtp:[127.0.0.1]:10024", content: "Subject: s\n\nscan me\n", status: handoff.OK, body: "Subject: s\n\nscan me\n", filter: "lmtp:unix:private/scanner", version: '2'},
		{name: "content_filter", cfilter: "smtp:[127.0.0.1]:10024", content: "Subject: s\n\nbody\n", status: handoff.OK, body: "Subject: s\n\nbody\n", filter: "smtp:[127.0.0.1]:10024"},
		{name: "header filter overrides content_filter", cfilter: "smtp:[127.0.0.1]:10024", content: "Subject: filter\n\nbody\n", status: handoff.OK, body: "Subject: filter\n\nbody\n", filter: "smtp:[127.0.0.1]:10025"},
		{name: "no_header_body_checks", flags: handoff.External &^ handoff.FlagChecks, content: "Subject: reject me\n\nbad body here\n", status: handoff.OK, body: "Subject: reject me\n\nbad body here\n"},
		{name: "notice gets no checks", flags: handoff.Internal, content: "Subject: reject me\n\nbad body here\n", status: handoff.OK, body: "Subject: reject me\n\nbad body here\n"},
		{name: "drop headers", content: "Bcc: x@example.org\nReturn-Path: <a@b>\nContent-Length: 5\nResent-Bcc: y\nSubject: s\n\nbody\n", status: handoff.OK, body: "Subject: s\n\nbody\n"},
		{name: "drop headers off", extra: "message_drop_headers =\n", content: "Bcc: x@example.org\nSubject: s\n\nbody\n", status: handoff.OK, body: "Bcc: x@example.org\nSubject: s\n\nbody\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, store := testCleanup(t, base+tc.extra)
			req := &handoff.Request{Sender: "s@example.com", RewriteContext: handoff.ContextRemote, ClientName: "client.example",
				ClientAddr: "192.0.2.1", HeloName: "helo.example", Protocol: "ESMTP",
				Recipients: []handoff.Recipient{{Addr: "r@example.net"}}, Filter: tc.cfilter, Flags: handoff.External, HasFlags: true}
			if tc.flags != 0 {
				req.Flags = tc.flags
			}
			os.MkdirAll(filepath.Join(store.Dir(), queue.Hold), 0o700)
			w, err := store.Create(queue.Incoming)
			if err != nil {
				t.Fatal(err)
			}
			res := c.receive(req, w, strings.NewReader(tc.content))
			if res.Status != handoff.OK {
				w.Abort()
			}
			if res.Status != tc.status || (tc.dsn != "" && res.DSN != tc.dsn) || (tc.text != "" && res.Text != tc.text) {
				t.Fatalf("result %+v", res)
			}
			log, _ := os.ReadFile(filepath.Join(store.Dir(), "log"))
			if testing.Verbose() {
				t.Logf("%s", log)
			}
			if tc.log != "" && !regexp.MustCompile(tc.log).Match(log) {
				t.Errorf("log does not match %s:\n%s", tc.log, log)
			}
			if res.Status != handoff.OK {
				if ids, _ := store.List(queue.Incoming); len(ids) != 0 {
					t.Errorf("queue file left: %v", ids)
				}
				return
			}
			q := queue.Incoming
			if tc.queue != "" {
				q = tc.queue
			}
			m, err := store.Open(q, w.ID())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			b, _ := readAll(m)
			if b != tc.body {
				t.Errorf("content %q, want %q", b, tc.body)
			}
			want := "r@example.net"
			if tc.rcpt != "" {
				want = tc.rcpt
			}
			if got := rcptAddrs(m); len(got) != 1 || got[0] != want {
				t.Errorf("recipients %v, want %s", got, want)
			}
			if got := m.Envelope.Attrs["filter"]; got != tc.filter {
				t.Errorf("filter %q, want %q", got, tc.filter)
			}
			if tc.rcpt != "" {
				// The redirect recipient keeps the original recipient.
				if r := m.Envelope.Recipients[len(m.Envelope.Recipients)-1]; r.Orig != "r@example.net" {
					t.Errorf("redirect recipient %+v", r)
				}
			}
			raw, _ := os.ReadFile(store.Path(q, w.ID()))
			if v := max(tc.version, '1'); len(raw) < 3 || raw[2] != v {
				t.Errorf("format version %q, want %c", raw[:3], v)
			}
		})
	}
}

func readAll(m *queue.Message) (string, error) {
	var b strings.Builder
	_, err := io.Copy(&b, m.Content())
	return b.String(), err
}
