package cleanup

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"postern/pkg/handoff"
	"postern/pkg/queue"
)

func TestBCC(t *testing.T) {
	dir := t.TempDir()
	sbcc := filepath.Join(dir, "sender_bcc")
	os.WriteFile(sbcc, []byte("boss@example.com archive@example.net\n@example.org org-archive@example.net\n"), 0o644)
	rbcc := filepath.Join(dir, "rcpt_bcc")
	os.WriteFile(rbcc, []byte("sales@example.com sales-copy@example.net\nr2@example.com always@example.net\n"), 0o644)
	valias := filepath.Join(dir, "valias")
	os.WriteFile(valias, []byte("archive@example.net a1@example.net, a2@example.net\n"), 0o644)
	base := "sender_bcc_maps = texthash:" + sbcc + "\nrecipient_bcc_maps = texthash:" + rbcc +
		"\nalways_bcc = always@example.net\nvirtual_alias_maps = texthash:" + valias + "\n"
	type rc struct{ addr, notify string }
	tests := []struct {
		name   string
		extra  string
		sender string
		rcpts  []string
		flags  handoff.Flags
		want   []rc
	}{
		{name: "sender and recipient and always", sender: "boss@example.com", rcpts: []string{"sales@example.com", "x@example.com"},
			want: []rc{{"sales@example.com", ""}, {"x@example.com", ""}, {"a1@example.net", "NEVER"}, {"a2@example.net", "NEVER"}, {"sales-copy@example.net", "NEVER"}, {"always@example.net", "NEVER"}}},
		{name: "domain key, duplicate bcc once", sender: "who@example.org", rcpts: []string{"r2@example.com"},
			want: []rc{{"r2@example.com", ""}, {"org-archive@example.net", "NEVER"}, {"always@example.net", "NEVER"}}},
		{name: "null sender", sender: "", rcpts: []string{"x@example.com"},
			want: []rc{{"x@example.com", ""}, {"always@example.net", "NEVER"}}},
		{name: "no_address_mappings", sender: "boss@example.com", rcpts: []string{"sales@example.com"}, flags: handoff.External &^ (handoff.FlagMap | handoff.FlagBCC),
			want: []rc{{"sales@example.com", ""}}},
		{name: "notice", sender: "boss@example.com", rcpts: []string{"sales@example.com"}, flags: handoff.Internal,
			want: []rc{{"sales@example.com", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, store := testCleanup(t, base+tc.extra)
			req := &handoff.Request{Sender: tc.sender, RewriteContext: handoff.ContextRemote}
			if tc.flags != 0 {
				req.Flags, req.HasFlags = tc.flags, true
			}
			for _, r := range tc.rcpts {
				req.Recipients = append(req.Recipients, handoff.Recipient{Addr: r})
			}
			res, m, _ := run(t, c, store, req, "Subject: x\n\nbody\n")
			if res.Status != handoff.OK {
				t.Fatalf("%+v", res)
			}
			var got []rc
			for _, r := range m.Envelope.Recipients {
				got = append(got, rc{r.Addr, r.Notify})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("recipients %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEnableOriginalRecipient(t *testing.T) {
	dir := t.TempDir()
	valias := filepath.Join(dir, "valias")
	os.WriteFile(valias, []byte("alias@example.org real@example.net\n"), 0o644)
	for _, tc := range []struct {
		extra string
		orig  string
	}{
		{"", "alias@example.org"},
		{"enable_original_recipient = no\n", ""},
	} {
		c, store := testCleanup(t, "virtual_alias_maps = texthash:"+valias+"\n"+tc.extra)
		req := &handoff.Request{Sender: "s@example.com", Recipients: []handoff.Recipient{{Addr: "alias@example.org"}}}
		_, m, _ := run(t, c, store, req, "Subject: x\n\nbody\n")
		if r := m.Envelope.Recipients; len(r) != 1 || r[0].Addr != "real@example.net" || r[0].Orig != tc.orig {
			t.Errorf("%q: recipients %+v, want orig %q", tc.extra, r, tc.orig)
		}
	}
}

// TestBodyRedirectQueueFile: a body REDIRECT marks the envelope
// recipients done (Delivered) and adds the redirect address to the
// extracted segment; with enable_original_recipient = no it carries no
// original recipient.
func TestBodyRedirectQueueFile(t *testing.T) {
	dir := t.TempDir()
	bc := filepath.Join(dir, "body_checks")
	os.WriteFile(bc, []byte("/^redirect/ REDIRECT trap\n/^filter/ FILTER amavis:\n"), 0o644)
	for _, extra := range []string{"", "enable_original_recipient = no\n"} {
		c, store := testCleanup(t, "body_checks = regexp:"+bc+"\nalways_bcc = bcc@example.net\n"+extra)
		req := &handoff.Request{Sender: "s@example.com", Recipients: []handoff.Recipient{{Addr: "a@example.org", Notify: "SUCCESS"}, {Addr: "b@example.org"}}}
		_, m, content := run(t, c, store, req, "Subject: x\n\nfilter\nredirect\n")
		if content != "Subject: x\n\nfilter\nredirect\n" {
			t.Errorf("content %q", content)
		}
		rs := m.Envelope.Recipients
		if m.Extracted != 3 || len(rs) != 4 {
			t.Fatalf("recipients %+v, extracted at %d", rs, m.Extracted)
		}
		for _, r := range rs[:3] {
			if r.Status != queue.Delivered {
				t.Errorf("envelope recipient %+v not done", r)
			}
		}
		wantOrig := "a@example.org"
		if extra != "" {
			wantOrig = ""
		}
		if r := rs[3]; r.Addr != "trap@example.com" || r.Status != queue.Pending || r.Orig != wantOrig || r.Notify != "SUCCESS" {
			t.Errorf("redirect recipient %+v", r)
		}
		if f := m.Envelope.Attrs["filter"]; f != "amavis:" {
			t.Errorf("filter %q", f)
		}
		log, _ := os.ReadFile(filepath.Join(store.Dir(), "log"))
		if !strings.Contains(string(log), ": redirect: body redirect from local; from=<s@example.com> to=<a@example.org>: trap") {
			t.Errorf("log:\n%s", log)
		}
	}
}
