package smtpclient

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	cases := []struct {
		in       string
		code     int
		text     string
		enhanced string
		err      bool
	}{
		{"250 2.0.0 Ok\r\n", 250, "250 2.0.0 Ok", "2.0.0", false},
		{"250 Ok\n", 250, "250 Ok", "2.0.0", false},
		{"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n", 550, "550-5.1.1 first 550-5.1.1 second 550 5.1.1 third", "5.1.1", false},
		{"451 4.3.0\r\n", 451, "451 4.3.0", "4.3.0", false},
		{"450 5.1.1 class disagrees\r\n", 450, "450 5.1.1 class disagrees", "4.0.0", false},
		{"554\r\n", 554, "554", "5.0.0", false},
		{"421 4.4.2 bye\x01\xff\r\n", 421, "421 4.4.2 bye??", "4.4.2", false},
		{"220-a\r\n", 0, "", "", true},       // EOF inside a multi-line reply
		{"hello\r\n", 0, "", "", true},       // no code
		{"199 too low\r\n", 0, "", "", true}, // not a reply code
		{"25\r\n", 0, "", "", true},
	}
	for _, c := range cases {
		r, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if c.err {
			if err == nil {
				t.Errorf("readReply(%q) = %+v; want error", c.in, r)
			}
			continue
		}
		if err != nil || r.Code != c.code || r.Text() != c.text || r.Enhanced() != c.enhanced {
			t.Errorf("readReply(%q) = %d %q %q, %v; want %d %q %q", c.in, r.Code, r.Text(), r.Enhanced(), err, c.code, c.text, c.enhanced)
		}
	}
	// Bounds: a long line is cut, too many lines are refused.
	long := "250 " + strings.Repeat("x", 10000) + "\r\n"
	r, err := readReply(bufio.NewReaderSize(strings.NewReader(long), 16))
	if err != nil || len(r.Lines[0]) > maxReplyLine {
		t.Errorf("long line: %d bytes, %v", len(r.Lines[0]), err)
	}
	many := strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n"
	if _, err := readReply(bufio.NewReader(strings.NewReader(many))); err == nil {
		t.Error("reply of too many lines accepted")
	}
}

func TestParseEHLO(t *testing.T) {
	r, err := readReply(bufio.NewReader(strings.NewReader("250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-AUTH PLAIN\r\n250-AUTH=LOGIN\r\n250-8bitmime\r\n250 DSN\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	ext := parseEHLO(r)
	if ext["SIZE"] != "1000" || ext["AUTH"] != "PLAIN LOGIN" || ext["PIPELINING"] != "" || len(ext) != 5 {
		t.Errorf("parseEHLO = %q", ext)
	}
	if _, ok := ext["8BITMIME"]; !ok {
		t.Error("8BITMIME keyword not upper-cased")
	}
}

func TestDotWriter(t *testing.T) {
	cases := []struct {
		chunks []string
		want   string
	}{
		{[]string{"a\nb\n"}, "a\r\nb\r\n.\r\n"},
		{[]string{"a\r\nb\r\n"}, "a\r\nb\r\n.\r\n"},
		{[]string{".x\n..y\n.\n"}, "..x\r\n...y\r\n..\r\n.\r\n"},
		{[]string{"no newline"}, "no newline\r\n.\r\n"},
		{[]string{""}, ".\r\n"},
		{[]string{"a\r", "\nb"}, "a\r\nb\r\n.\r\n"},
		{[]string{"a\r", "b\n"}, "a\rb\r\n.\r\n"},
		{[]string{"a\n", ".", "b\n"}, "a\r\n..b\r\n.\r\n"},
		{[]string{"x\n.", "\n"}, "x\r\n..\r\n.\r\n"},
		{[]string{"end\r"}, "end\r\r\n.\r\n"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		d := newDotWriter(bw)
		for _, ch := range c.chunks {
			d.Write([]byte(ch))
		}
		d.Close()
		bw.Flush()
		if b.String() != c.want {
			t.Errorf("%q → %q; want %q", c.chunks, b.String(), c.want)
		}
	}
}

func TestParseNexthop(t *testing.T) {
	cases := []struct {
		in   string
		lmtp bool
		host string
		port int
		mx   bool
		path string
		err  bool
	}{
		{"example.com", false, "example.com", 25, true, "", false},
		{"example.com:2525", false, "example.com", 2525, true, "", false},
		{"[mail.example.com]", false, "mail.example.com", 25, false, "", false},
		{"[mail.example.com]:submission", false, "mail.example.com", 587, false, "", false},
		{"[192.0.2.1]:26", false, "192.0.2.1", 26, false, "", false},
		{"[ipv6:2001:db8::1]", false, "2001:db8::1", 25, false, "", false},
		{"192.0.2.1", false, "192.0.2.1", 25, false, "", false},
		{"inet:example.com", false, "example.com", 25, true, "", false},
		{"unix:private/dovecot-lmtp", true, "", 24, false, "private/dovecot-lmtp", false},
		{"inet:127.0.0.1:2424", true, "127.0.0.1", 2424, false, "", false},
		{"lmtp.example:24", true, "lmtp.example", 24, false, "", false},
		{"unix:/x", false, "", 0, false, "", true},
		{"[unterminated", false, "", 0, false, "", true},
		{"host:notaport", false, "", 0, false, "", true},
		{"[h]x", false, "", 0, false, "", true},
	}
	for _, c := range cases {
		def := 25
		if c.lmtp {
			def = 24
		}
		d, err := parseNexthop(c.in, c.lmtp, def)
		if c.err {
			if err == nil {
				t.Errorf("parseNexthop(%q) = %+v; want error", c.in, d)
			}
			continue
		}
		if err != nil || d.host != c.host || d.port != c.port || d.mx != c.mx || d.path != c.path {
			t.Errorf("parseNexthop(%q) = %+v, %v", c.in, d, err)
		}
	}
	if got := splitNexthops("[a]:587, [b]:587 c"); len(got) != 3 || got[1] != "[b]:587" {
		t.Errorf("splitNexthops = %q", got)
	}
}

func TestXtext(t *testing.T) {
	if got := xtext("a+b=c d\xc3"); got != "a+2Bb+3Dc+20d+C3" {
		t.Errorf("xtext = %q", got)
	}
}

func TestMinTLSVersion(t *testing.T) {
	cases := []struct {
		in   []string
		want uint16
	}{
		{[]string{">=TLSv1"}, tls.VersionTLS10},
		{[]string{">=TLSv1.2"}, tls.VersionTLS12},
		{[]string{"!SSLv2", "!SSLv3", "!TLSv1", "!TLSv1.1"}, tls.VersionTLS12},
		{nil, tls.VersionTLS10},
	}
	for _, c := range cases {
		if got := minTLSVersion(c.in); got != c.want {
			t.Errorf("minTLSVersion(%q) = %x; want %x", c.in, got, c.want)
		}
	}
}

func TestPickMech(t *testing.T) {
	cases := []struct {
		offered string
		filter  []string
		opts    []string
		want    string
	}{
		{"LOGIN PLAIN CRAM-MD5", nil, []string{"noanonymous"}, "PLAIN"},
		{"LOGIN", nil, nil, "LOGIN"},
		{"PLAIN LOGIN", []string{"login"}, nil, "LOGIN"},
		{"PLAIN LOGIN", nil, []string{"noplaintext", "noanonymous"}, ""},
		{"CRAM-MD5", nil, nil, ""},
	}
	for _, c := range cases {
		if got := pickMech(c.offered, c.filter, c.opts); got != c.want {
			t.Errorf("pickMech(%q, %q, %q) = %q; want %q", c.offered, c.filter, c.opts, got, c.want)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 x\n", "", "2", "999 x\r\n", "250-\r\n250\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := readReply(bufio.NewReaderSize(bytes.NewReader(b), 16))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > maxReplyLines {
			t.Fatalf("bad reply %+v", r)
		}
		e := r.Enhanced()
		if e == "" || int(e[0]-'0') != r.Class() {
			t.Fatalf("enhanced %q for code %d", e, r.Code)
		}
		for _, c := range []byte(r.Text()) {
			if c < ' ' || c > '~' {
				t.Fatalf("unprintable byte in %q", r.Text())
			}
		}
		parseEHLO(r)
	})
}

// FuzzDotWriter checks that undoing the transparency of what dotWriter
// wrote gives back the content with CRLF line ends, whatever the chunking.
func FuzzDotWriter(f *testing.F) {
	f.Add([]byte(".a\n.\r\nb\rc"), uint8(3))
	f.Add([]byte("x"), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		d := newDotWriter(bw)
		k := int(cut)
		if k > len(in) {
			k = len(in)
		}
		d.Write(in[:k])
		d.Write(in[k:])
		d.Close()
		bw.Flush()
		out := b.String()
		if !strings.HasSuffix(out, "\r\n.\r\n") && out != ".\r\n" {
			t.Fatalf("no end-of-data line: %q", out)
		}
		body := strings.TrimSuffix(out, ".\r\n")
		var lines []string
		for _, l := range strings.SplitAfter(body, "\r\n") {
			if l == "" {
				continue
			}
			if !strings.HasSuffix(l, "\r\n") {
				t.Fatalf("line without CRLF: %q", l)
			}
			if strings.HasPrefix(l, ".") {
				l = l[1:]
			} else if l == ".\r\n" {
				t.Fatalf("premature end of data in %q", out)
			}
			lines = append(lines, l)
		}
		got := strings.Join(lines, "")
		want := strings.ReplaceAll(strings.ReplaceAll(string(in), "\r\n", "\n"), "\n", "\r\n")
		if want != "" && !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		if got != want {
			t.Fatalf("round trip of %q: %q; want %q", in, got, want)
		}
	})
}
