package cleanup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/maillog"
	"postern/pkg/queue"
)

// benchMessage is a typical local submission (sendmail -t after Bcc
// removal).
const benchMessage = "From: alice@example.com\nTo: bob@example.org, carol@example.org\nSubject: report\nDate: Wed, 25 Nov 2026 10:00:00 +0000\nMessage-Id: <x@example.com>\nMIME-Version: 1.0\nContent-Type: text/plain\n\n" +
	"line of text line of text line of text line of text line of text\n"

// BenchmarkContent measures cleanup's per-message content work (queue
// file written, not committed: the fsync would dominate) with the
// configuration given; "default" sets no rewriting parameter.
func BenchmarkContent(b *testing.B) {
	for _, bc := range []struct{ name, extra string }{
		{"default", ""},
		{"canonical+checks", "canonical_maps = inline:{ alice@example.com=a.smith@example.com }\nheader_checks = regexp:{ {/^Subject: spam/ REJECT} }\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			cfg, err := config.Parse(strings.NewReader("queue_directory = "+dir+"\nmyhostname = mx.example.com\nmyorigin = example.com\n"+bc.extra), "main.cf")
			if err != nil {
				b.Fatal(err)
			}
			log, err := maillog.New(maillog.Options{Program: "cleanup", File: filepath.Join(dir, "log"), FilePrefixes: []string{dir}})
			if err != nil {
				b.Fatal(err)
			}
			c := newCleanup(cfg, log)
			if err := c.openTables(cfg); err != nil {
				b.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, queue.Incoming), 0o700)
			body := strings.Repeat("line of text line of text line of text line of text line of text\n", 30)
			env := &queue.Envelope{Sender: "alice@example.com", Recipients: []queue.Recipient{{Addr: "bob@example.org", Status: queue.Pending}, {Addr: "carol@example.org", Status: queue.Pending}}}
			b.ReportAllocs()
			for b.Loop() {
				w, err := c.store.Create(queue.Incoming)
				if err != nil {
					b.Fatal(err)
				}
				mc := &msgCtx{id: string(w.ID()), sender: env.Sender, addMissing: true, local: true}
				if _, err := c.copyContent(w, strings.NewReader(benchMessage+body), mc, func() error { return w.Envelope(env) }); err != nil {
					b.Fatal(err)
				}
				w.Abort()
			}
		})
	}
}
