package cleanup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/pkg/handoff"
	"postern/pkg/queue"
)

// rcptAddrs lists the recipients still to be delivered.
func rcptAddrs(m *queue.Message) []string {
	var out []string
	for _, r := range m.Envelope.Recipients {
		if !r.Status.Done() {
			out = append(out, r.Addr)
		}
	}
	return out
}

func TestVirtualAlias(t *testing.T) {
	dir := t.TempDir()
	valias := filepath.Join(dir, "valias")
	os.WriteFile(valias, []byte(`
list@example.org      a@example.net, b@example.net, nested@example.org
nested@example.org    c@example.net
self@example.org      self@example.org, copy@example.net
loop1@example.org     loop2@example.org
loop2@example.org     loop1@example.org
big@example.org       x1@example.net x2@example.net x3@example.net x4@example.net
@catch.example        catchall@example.net
user@example.org      user@example.net
dup@example.org       a@example.net
localuser             l@example.net
`), 0o644)
	tests := []struct {
		name  string
		extra string
		rcpts []string
		want  []string // nil: deferred
	}{
		{"unmapped stays", "", []string{"x@example.org"}, []string{"x@example.org"}},
		{"list recursive", "", []string{"list@example.org"}, []string{"a@example.net", "b@example.net", "c@example.net"}},
		{"self stays", "", []string{"self@example.org"}, []string{"self@example.org", "copy@example.net"}},
		{"loop deferred", "", []string{"loop1@example.org"}, nil},
		{"expansion limit", "virtual_alias_expansion_limit = 3\n", []string{"big@example.org"}, nil},
		{"recursion limit", "virtual_alias_recursion_limit = 1\n", []string{"list@example.org"}, nil},
		{"catch-all", "", []string{"who@catch.example"}, []string{"catchall@example.net"}},
		{"extension propagated", "recipient_delimiter = +\n", []string{"user+tag@example.org"}, []string{"user+tag@example.net"}},
		{"extension not propagated", "recipient_delimiter = +\npropagate_unmatched_extensions = canonical\n", []string{"user+tag@example.org"}, []string{"user@example.net"}},
		{"duplicates after expansion", "", []string{"a@example.net", "dup@example.org"}, []string{"a@example.net"}},
		{"bare name in local domain", "", []string{"localuser"}, []string{"l@example.net"}},
		{"bare name elsewhere not local", "", []string{"localuser@example.org"}, []string{"localuser@example.org"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, store := testCleanup(t, "virtual_alias_maps = texthash:"+valias+"\n"+tc.extra)
			req := &handoff.Request{Sender: "s@example.com", RewriteContext: handoff.ContextRemote}
			for _, r := range tc.rcpts {
				req.Recipients = append(req.Recipients, handoff.Recipient{Addr: r})
			}
			res, m, _ := run(t, c, store, req, "Subject: x\n\nbody\n")
			if tc.want == nil {
				if res.Status != handoff.TempFail || res.DSN != "4.7.1" {
					t.Fatalf("want deferral, got %+v", res)
				}
				return
			}
			if res.Status != handoff.OK {
				t.Fatalf("%+v", res)
			}
			if got := rcptAddrs(m); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("recipients %q, want %q", got, tc.want)
			}
			for _, r := range m.Envelope.Recipients {
				if r.Orig != tc.rcpts[0] && len(tc.rcpts) == 1 {
					t.Errorf("orig %q, want %q", r.Orig, tc.rcpts[0])
				}
			}
		})
	}
}
