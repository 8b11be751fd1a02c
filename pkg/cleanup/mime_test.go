package cleanup

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"postern/pkg/handoff"
)

const mimeMsg = `Subject: s
MIME-Version: 1.0
Content-Type: multipart/mixed;
 boundary="outer"

preamble
--outer
Content-Type: text/plain

hello
body-word
--outer
Content-Type: application/octet-stream;
	name="evil.exe"
Content-Disposition: attachment

AAAA
--outer
Content-Type: message/rfc822

Subject: inner subject
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/html

<p>inner body</p>
--inner--
--outer--
epilogue
`

func TestMimeChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	attach := write("attach", `/^Content-Type:.*name="?.*\.exe"?/ REJECT attachment type not allowed`+"\n")
	warnAll := write("warnall", "/^Content-Type: (.*)/ WARN ct=$1\n/^Subject: (.*)/ WARN subject=$1\n")
	body := write("body", "/^(.*)$/ WARN line=$1\n")
	tests := []struct {
		name    string
		extra   string
		status  handoff.Status
		logs    []string
		notLogs []string
	}{
		{name: "attachment rejected by header_checks default for mime headers", extra: "header_checks = regexp:" + attach + "\n",
			status: handoff.PermFail, logs: []string{`reject: header Content-Type: application/octet-stream;.name="evil\.exe" from local; from=<s@example\.com> to=<r@example\.net>: 5\.7\.1 attachment type not allowed`}},
		{name: "mime_header_checks off", extra: "header_checks = regexp:" + attach + "\nmime_header_checks =\n", status: handoff.OK},
		{name: "nested headers", extra: "header_checks = regexp:" + warnAll + "\n", status: handoff.OK,
			logs: []string{`warning: header Subject: inner subject from local`, `warning: header Content-Type: text/html .*: ct=text/html`,
				`warning: header Content-Type: multipart/mixed; boundary="outer" .*: ct=multipart/mixed`}},
		{name: "nested_header_checks off", extra: "header_checks = regexp:" + warnAll + "\nnested_header_checks =\n", status: handoff.OK,
			logs: []string{`warning: header Content-Type: text/html `}, notLogs: []string{`inner subject`}},
		{name: "body lines only", extra: "body_checks = regexp:" + body + "\n", status: handoff.OK,
			logs:    []string{`line=hello`, `line=body-word`, `line=AAAA`, `line=preamble`, `line=epilogue`, `line=<p>inner body</p>`},
			notLogs: []string{`line=--outer`, `line=Content-Type`, `line=Subject: inner`, `line=--inner`}},
		{name: "body limit per part", extra: "body_checks = regexp:" + body + "\nbody_checks_size_limit = 6\n", status: handoff.OK,
			logs: []string{`line=hello`, `line=AAAA`}, notLogs: []string{`line=body-word`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, store := testCleanup(t, tc.extra)
			req := &handoff.Request{Sender: "s@example.com", RewriteContext: handoff.ContextRemote, Recipients: []handoff.Recipient{{Addr: "r@example.net"}}}
			res, _, content := run(t, c, store, req, mimeMsg)
			if res.Status != tc.status {
				t.Fatalf("%+v", res)
			}
			if res.Status == handoff.OK && content != mimeMsg {
				t.Errorf("content changed:\n%s", content)
			}
			log, _ := os.ReadFile(filepath.Join(store.Dir(), "log"))
			for _, re := range tc.logs {
				if !regexp.MustCompile(re).Match(log) {
					t.Errorf("log does not match %s:\n%s", re, log)
				}
			}
			for _, s := range tc.notLogs {
				if strings.Contains(string(log), s) {
					t.Errorf("log has %q:\n%s", s, log)
				}
			}
		})
	}
}

func TestMediaType(t *testing.T) {
	tests := []struct{ in, typ, boundary string }{
		{"Content-Type: multipart/mixed; boundary=\"a b\"\n", "multipart/mixed", "a b"},
		{"Content-Type: Multipart/Alternative;\n boundary=xyz\n", "multipart/alternative", "xyz"},
		{"Content-Type: text/plain\n", "text/plain", ""},
		{"Content-Type: multipart/mixed; boundary=abc; bad=\"\n", "multipart/mixed", "abc"},
		{"Content-Type\n", "", ""},
	}
	for _, tc := range tests {
		typ, b := mediaType(tc.in)
		if typ != tc.typ || b != tc.boundary {
			t.Errorf("%q: %q %q, want %q %q", tc.in, typ, b, tc.typ, tc.boundary)
		}
	}
}
