package cleanup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/pkg/handoff"
)

func TestRewriteAddrList(t *testing.T) {
	up := func(a string) string { return "[" + a + "]" }
	tests := []struct{ in, want string }{
		{" a@b", " [a@b]"},
		{" a@b, c@d", " [a@b], [c@d]"},
		{` "Doe, John" <j@x>, k@y (Kay)`, ` "Doe, John" <[j@x]>, [k@y] (Kay)`},
		{" Name <  j@x >", " Name <  [j@x] >"},
		{" <@r1,@r2:u@h>", " <@r1,@r2:[u@h]>"},
		{" undisclosed-recipients:;", " undisclosed-recipients:;"},
		{" team: a@b, c@d;", " team: [a@b], [c@d];"},
		{" <>", " <>"},
		{" bob\n\tcarol", " [bob\n\tcarol]"},
		{" x <unbalanced", " x <unbalanced"},
		{` "q\"uoted"@h`, ` ["q\"uoted"@h]`},
	}
	for _, tc := range tests {
		if got := rewriteAddrList(tc.in, up); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalAndMasquerade(t *testing.T) {
	dir := t.TempDir()
	canon := filepath.Join(dir, "canonical")
	os.WriteFile(canon, []byte("joe@example.org Joe.Bloggs@example.org\n@old.example new@example.net\nroot root@admin.example.com\n"), 0o644)
	scanon := filepath.Join(dir, "scanon")
	os.WriteFile(scanon, []byte("alice@example.com a.smith@example.com\n"), 0o644)
	rcanon := filepath.Join(dir, "rcanon")
	os.WriteFile(rcanon, []byte("bob@example.org robert@example.org\n"), 0o644)
	base := "canonical_maps = texthash:" + canon + "\nsender_canonical_maps = texthash:" + scanon + "\nrecipient_canonical_maps = texthash:" + rcanon + "\n"
	tests := []struct {
		name     string
		extra    string
		sender   string
		rcpt     string
		header   string
		local    bool
		wantFrom string
		wantRcpt string
		wantHdr  string
	}{
		{"sender canonical", base, "alice", "x@example.net", "Subject: s\n", false, "a.smith@example.com", "x@example.net", "Subject: s\n"},
		{"recipient canonical not on sender", base, "bob@example.org", "bob@example.org", "", false, "bob@example.org", "robert@example.org", ""},
		{"canonical both", base, "joe@example.org", "joe@example.org", "", false, "Joe.Bloggs@example.org", "Joe.Bloggs@example.org", ""},
		{"domain catch-all", base, "s@x.example", "anyone@old.example", "", false, "s@x.example", "new@example.net", ""},
		{"bare user in local domain", base, "root", "r@example.net", "", false, "root@admin.example.com", "r@example.net", ""},
		{"canonical_classes envelope only", base + "canonical_classes = envelope_recipient\n", "joe@example.org", "joe@example.org", "To: joe@example.org\n", false,
			"joe@example.org", "Joe.Bloggs@example.org", "To: joe@example.org\n"},
		{"headers", base, "s@example.net", "r@example.net",
			"From: Alice <alice@example.com>\nTo: bob@example.org, \"J\" <joe@example.org>\nCc: x@old.example\nSubject: joe@example.org\n", false,
			"s@example.net", "r@example.net",
			"From: Alice <a.smith@example.com>\nTo: robert@example.org, \"J\" <Joe.Bloggs@example.org>\nCc: new@example.net\nSubject: joe@example.org\n"},
		{"recipient canonical in headers", base, "s@example.net", "r@example.net", "Cc: bob@example.org\nFrom: bob@example.org\n", false,
			"s@example.net", "r@example.net", "Cc: robert@example.org\nFrom: bob@example.org\n"},
		{"masquerade", "masquerade_domains = !secure.example.com, example.com\n", "u@host.example.com", "v@host.example.com",
			"From: u@host.example.com\nTo: v@mx.secure.example.com, w@secure.example.com\n", false,
			"u@example.com", "v@host.example.com", "From: u@example.com\nTo: v@mx.secure.example.com, w@secure.example.com\n"},
		{"masquerade envelope_recipient", "masquerade_domains = example.com\nmasquerade_classes = envelope_recipient\n", "u@host.example.com", "v@host.example.com", "", false,
			"u@host.example.com", "v@example.com", ""},
		{"masquerade exceptions", "masquerade_domains = example.com\nmasquerade_exceptions = root\n", "root@host.example.com", "r@example.net",
			"From: root@host.example.com, u@a.b.example.com\n", false,
			"root@host.example.com", "r@example.net", "From: root@host.example.com, u@example.com\n"},
		{"append_dot_mydomain", "append_dot_mydomain = yes\nmydomain = example.com\nmyorigin = host\n", "u", "v@other", "", false,
			"u@host.example.com", "v@other.example.com", ""},
		{"append_at_myorigin off", "append_at_myorigin = no\n", "u", "v@example.net", "", false, "u", "v@example.net", ""},
		{"local context qualifies headers", "", "u@example.com", "v@example.net", "To: bob, carol@x.example\nCc: dave\n", true,
			"u@example.com", "v@example.net", "To: bob@example.com, carol@x.example\nCc: dave@example.com\n"},
		{"remote context leaves headers", "", "u@example.com", "v@example.net", "To: bob\n", false, "u@example.com", "v@example.net", "To: bob\n"},
		{"remote_header_rewrite_domain", "remote_header_rewrite_domain = domain.invalid\n", "u@example.com", "v@example.net",
			"To: bob, carol@x.example\nCc: \"D\" <dave>\n", false, "u@example.com", "v@example.net",
			"To: bob@domain.invalid, carol@x.example\nCc: \"D\" <dave@domain.invalid>\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, store := testCleanup(t, tc.extra)
			ctx := handoff.ContextRemote
			if tc.local {
				ctx = handoff.ContextLocal
			}
			req := &handoff.Request{Sender: tc.sender, RewriteContext: ctx, Recipients: []handoff.Recipient{{Addr: tc.rcpt}}}
			hdr := tc.header
			if tc.local {
				hdr += "Date: x\nMessage-Id: <x@y>\nFrom: f@example.com\n"
			}
			res, m, content := run(t, c, store, req, hdr+"\nbody\n")
			if res.Status != handoff.OK {
				t.Fatalf("%+v", res)
			}
			if m.Envelope.Sender != tc.wantFrom {
				t.Errorf("sender %q, want %q", m.Envelope.Sender, tc.wantFrom)
			}
			if got := m.Envelope.Recipients[0].Addr; got != tc.wantRcpt {
				t.Errorf("recipient %q, want %q", got, tc.wantRcpt)
			}
			if m.Envelope.Recipients[0].Orig != tc.rcpt {
				t.Errorf("orig %q, want %q", m.Envelope.Recipients[0].Orig, tc.rcpt)
			}
			want := tc.wantHdr
			if tc.local {
				want += "Date: x\nMessage-Id: <x@y>\nFrom: f@example.com\n"
			}
			if !strings.HasPrefix(content, want+"\nbody\n") {
				t.Errorf("content %q, want header %q", content, want)
			}
		})
	}
}
