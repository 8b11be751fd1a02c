package local

import (
	"reflect"
	"strings"
	"testing"

	"postern/pkg/config"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		elem string
		want destination
	}{
		{"|/usr/bin/procmail -a x", destination{destCommand, "/usr/bin/procmail -a x"}},
		{"/var/log/mail.archive", destination{destFile, "/var/log/mail.archive"}},
		{"/srv/Maildir/", destination{destFile, "/srv/Maildir/"}},
		{":include:/etc/mail/staff", destination{destInclude, "/etc/mail/staff"}},
		{":INCLUDE: /etc/mail/staff", destination{destInclude, "/etc/mail/staff"}},
		{"someone@elsewhere.example", destination{destAddress, "someone@elsewhere.example"}},
		{"root", destination{destAddress, "root"}},
		{"joe", destination{destSelf, "joe"}},
		{"\\joe", destination{destSelf, "joe"}},
		{"Joe@Host.Example", destination{destSelf, "Joe@Host.Example"}},
		{"\\other", destination{destAddress, "other"}},
	} {
		if got := classify(c.elem, "joe", "joe@host.example"); got != c.want {
			t.Errorf("classify(%q) = %+v, want %+v", c.elem, got, c.want)
		}
	}
}

func TestParseForward(t *testing.T) {
	in := "# my forward\n\nfriend@example.org, \\joe\n\"|/usr/bin/vacation joe\"\n  , /home/joe/archive\n"
	want := []string{"friend@example.org", "\\joe", "|/usr/bin/vacation joe", "/home/joe/archive"}
	if got := parseForward(in); !reflect.DeepEqual(got, want) {
		t.Errorf("parseForward = %q, want %q", got, want)
	}
	if got := parseForward("# nothing\n\n"); len(got) != 0 {
		t.Errorf("empty .forward gave %q", got)
	}
}

func TestForwardPaths(t *testing.T) {
	for _, c := range []struct {
		main string
		a    attrs
		want []string
	}{
		// Postfix's default: the extension form is tried only with one.
		{"recipient_delimiter = +", attrs{user: "joe", home: "/home/joe", extension: "list", delimiter: "+"},
			[]string{"/home/joe/.forward+list", "/home/joe/.forward"}},
		{"recipient_delimiter = +", attrs{user: "joe", home: "/home/joe", delimiter: "+"},
			[]string{"/home/joe/.forward"}},
		{"", attrs{user: "joe", home: "/home/joe"}, []string{"/home/joe/.forward"}},
		// Attribute values are filtered: no shell or path syntax from
		// the address gets into the file name.
		{"recipient_delimiter = +", attrs{user: "joe", home: "/home/joe", extension: "a;b`c", delimiter: "+"},
			[]string{"/home/joe/.forward+a_b_c", "/home/joe/.forward"}},
		{"forward_path = /var/forward/$user, $home/.forward", attrs{user: "joe", home: "/home/joe"},
			[]string{"/var/forward/joe", "/home/joe/.forward"}},
	} {
		cfg, err := config.Parse(strings.NewReader(c.main+"\n"), "main.cf")
		if err != nil {
			t.Fatal(err)
		}
		if got := forwardPaths(cfg, &c.a); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q %+v: forwardPaths = %q, want %q", c.main, c.a, got, c.want)
		}
	}
}
