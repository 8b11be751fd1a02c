package sendmail

import (
	"io"
	"testing"
)

// Audit of issue 3: input handling in delivery mode, as Postfix's
// sendmail(1) copies standard input into the queue file.
func TestAuditInputHandling(t *testing.T) {
	if o, err := ParseArgs("sendmail", []string{"-bm", "a@example.org"}); err != nil || o.Mode != ModeEnqueue {
		t.Errorf("-bm: %+v %v", o, err)
	}
	tests := []struct {
		name, in string
		args     []string
		want     string
	}{
		// Not SMTP: a leading dot is not unstuffed; only a lone "." ends
		// the input, after the CR of a CR LF input is gone.
		{"dots without -i", "S: x\n\n..two\n. \n.x\n.\r\nnot read\n", nil, "S: x\n\n..two\n. \n.x\n"},
		{"crlf dot", "S: x\r\n\r\na\r\n.\r\nb\r\n", nil, "S: x\n\na\n"},
		{"dot with -i", "S: x\n\na\n.\nb\n", []string{"-i"}, "S: x\n\na\n.\nb\n"},
		{"dot with -oi", "S: x\n\na\n.\nb\n", []string{"-oi"}, "S: x\n\na\n.\nb\n"},
		// Leading From_ lines, also >From_, are mbox separators and dropped;
		// only at the start.
		{"from lines", "From a@b Mon Jan 1 00:00:00 2026\n>From c@d x\nS: x\n\nFrom body\n", []string{"-i"}, "S: x\n\nFrom body\n"},
		// A CR inside a line is data.
		{"inner cr", "S: x\n\na\rb\n", []string{"-i"}, "S: x\n\na\rb\n"},
	}
	for _, tt := range tests {
		conf, qdir := testInstance(t, "")
		args := append([]string{"-C", conf}, tt.args...)
		code, _, stderr := runSendmail(t, "sendmail", nil, tt.in, append(args, "a@example.org")...)
		if code != 0 {
			t.Errorf("%s: exit %d: %s", tt.name, code, stderr)
			continue
		}
		got, _ := io.ReadAll(onlyMessage(t, qdir).Content())
		if string(got) != tt.want {
			t.Errorf("%s: content %q, want %q", tt.name, got, tt.want)
		}
	}
}
