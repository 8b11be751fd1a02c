package sendmail

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCopyMessage(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		dotEnds  bool
		extract  bool
		want     string
		wantRcpt []string
	}{
		{"crlf", "Subject: a\r\n\r\nline\r\nline2\r\r\n", false, false, "Subject: a\n\nline\nline2\n", nil},
		{"bare cr kept inside", "a\rb\r\n", false, false, "a\rb\n", nil},
		{"no final newline", "Subject: a\n\nlast", false, false, "Subject: a\n\nlast", nil},
		{"dot ends", "Subject: a\n\nx\n.\ny\n", true, false, "Subject: a\n\nx\n", nil},
		{"dot crlf ends", "Subject: a\r\n\r\nx\r\n.\r\ny\r\n", true, false, "Subject: a\n\nx\n", nil},
		{"dot with -i", "Subject: a\n\nx\n.\ny\n", false, false, "Subject: a\n\nx\n.\ny\n", nil},
		{"dots kept", "Subject: a\n\n..x\n. \n", true, false, "Subject: a\n\n..x\n. \n", nil},
		{"from lines dropped", "From me Mon Jan 1\n>From again\nSubject: a\n\nFrom body\n", false, false, "Subject: a\n\nFrom body\n", nil},
		{"extract to cc bcc", "To: a@x, Joe <b@y>\nCc: c@z\nBcc: d@w,\n e@v\nSubject: s\n\nbody\nTo: not@header\n", false, true,
			"To: a@x, Joe <b@y>\nCc: c@z\nSubject: s\n\nbody\nTo: not@header\n", []string{"a@x", "b@y", "c@z", "d@w", "e@v"}},
		{"case insensitive", "tO: a@x\nBCC: b@y\n\n", false, true, "tO: a@x\n\n", []string{"a@x", "b@y"}},
		{"resent wins", "To: old@x\nResent-To: new@y\nResent-Bcc: hid@z\nCc: oldcc@x\n\n", false, true,
			"To: old@x\nResent-To: new@y\nCc: oldcc@x\n\n", []string{"new@y", "hid@z"}},
		{"bcc kept without -t", "To: a@x\nBcc: b@y\n\n", false, false, "To: a@x\nBcc: b@y\n\n", nil},
		{"group and comments", "To: team: a@x, (c) b@y;\n\n", false, true, "To: team: a@x, (c) b@y;\n\n", []string{"a@x", "b@y"}},
		{"header ends at non-header", "To: a@x\nnot a header\nTo: b@y\n", false, true, "To: a@x\nnot a header\nTo: b@y\n", []string{"a@x"}},
		{"space before colon", "To : a@x\n\n", false, true, "To : a@x\n\n", []string{"a@x"}},
		{"crlf in headers", "To: a@x,\r\n\tb@y\r\n\r\n", false, true, "To: a@x,\n\tb@y\n\n", []string{"a@x", "b@y"}},
		{"dot in header ends", "To: a@x\n.\n", true, true, "To: a@x\n", []string{"a@x"}},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		rcpts, err := copyMessage(strings.NewReader(tt.in), &out, tt.dotEnds, tt.extract, 102400)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if out.String() != tt.want {
			t.Errorf("%s: content\n%q\nwant\n%q", tt.name, out.String(), tt.want)
		}
		if !slices.Equal(rcpts, tt.wantRcpt) {
			t.Errorf("%s: recipients %q, want %q", tt.name, rcpts, tt.wantRcpt)
		}
	}
}

func TestCopyMessageLongLines(t *testing.T) {
	long := strings.Repeat("x", 200000)
	in := "Subject: " + long + "\r\nTo: a@x\n\n" + long + "\r\n.\n" + long
	var out bytes.Buffer
	rcpts, err := copyMessage(strings.NewReader(in), &out, false, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: " + long + "\nTo: a@x\n\n" + long + "\n.\n" + long
	if out.String() != want {
		t.Errorf("long lines changed (got %d bytes, want %d)", out.Len(), len(want))
	}
	if !slices.Equal(rcpts, []string{"a@x"}) {
		t.Errorf("recipients %q", rcpts)
	}
	_, err = copyMessage(strings.NewReader("To: "+long+"\n\n"), &out, false, true, 102400)
	if !errors.Is(err, errHeaderTooLong) {
		t.Errorf("over-long To: gave %v", err)
	}
}

func FuzzCopyMessage(f *testing.F) {
	f.Add("To: a@x\r\nBcc: b\r\n\r\nbody\r\n.\r\n", true, true)
	f.Add("From x\nResent-To: y\n\n", false, true)
	f.Fuzz(func(t *testing.T, in string, dotEnds, extract bool) {
		var out bytes.Buffer
		if _, err := copyMessage(strings.NewReader(in), &out, dotEnds, extract, 1000); err != nil && !errors.Is(err, errHeaderTooLong) {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "\r\n") {
			t.Fatalf("CR LF left in %q", out.String())
		}
		if out.Len() > len(in) {
			t.Fatalf("output longer than input")
		}
	})
}
