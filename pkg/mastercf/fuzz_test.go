package mastercf

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"postern/pkg/config"
)

// FuzzParse feeds arbitrary master.cf text to the parser. Errors must
// carry file:line, and every parsed service must survive a Format and
// FormatFolded round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add("smtp inet n - n - - smtpd -o a=b\n  -o { c = d e } -v { x y } z\n")
	f.Add("q unix - - n 300? 1 qmgr\npipe unix - n n - - pipe flags=R argv=/bin/x ${a} {b}\n")
	if data, err := os.ReadFile("testdata/bench-master.cf"); err == nil {
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, text string) {
		services, _, err := Parse(strings.NewReader(text), "master.cf", 100)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "master.cf:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		for _, s := range services {
			for _, out := range []string{s.Format(), s.FormatFolded()} {
				again, _, err := Parse(strings.NewReader(out+"\n"), "again", 100)
				if err != nil {
					t.Fatalf("Format %q does not parse: %v", out, err)
				}
				if len(again) != 1 {
					t.Fatalf("Format %q gives %d services", out, len(again))
				}
				a := again[0]
				a.File, a.Line = s.File, s.Line
				if !reflect.DeepEqual(a, s) {
					t.Fatalf("round trip of %q:\ngot  %+v\nwant %+v", out, a, s)
				}
			}
		}
	})
}
