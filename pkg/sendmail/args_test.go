package sendmail

import (
	"errors"
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		argv0 string
		args  []string
		check func(o *Options) bool
	}{
		{"sendmail", []string{"-t", "-i"}, func(o *Options) bool { return o.Extract && !o.DotEnds && o.Mode == ModeEnqueue }},
		{"sendmail", []string{"-ti"}, func(o *Options) bool { return o.Extract && !o.DotEnds }},
		{"sendmail", []string{"-oi", "a@b"}, func(o *Options) bool { return !o.DotEnds && slices.Equal(o.Recipients, []string{"a@b"}) }},
		{"sendmail", []string{"-fme@x", "-F", "My Name", "b"}, func(o *Options) bool {
			return o.HaveSender && o.Sender == "me@x" && o.HaveName && o.FullName == "My Name"
		}},
		{"sendmail", []string{"-r", "<>", "b"}, func(o *Options) bool { return o.HaveSender && o.Sender == "<>" }},
		{"sendmail", []string{"-N", "success,delay", "-R", "hdrs", "-V", "env1", "b"}, func(o *Options) bool {
			return o.Notify == "SUCCESS,DELAY" && o.Ret == "HDRS" && o.EnvID == "env1"
		}},
		{"sendmail", []string{"-N", "never", "b"}, func(o *Options) bool { return o.Notify == "NEVER" }},
		{"sendmail", []string{"-N", "never,success", "b"}, func(o *Options) bool { return o.Notify == "" && len(o.Warnings) == 1 }},
		{"sendmail", []string{"-bp"}, func(o *Options) bool { return o.Mode == ModeMailq }},
		{"mailq", nil, func(o *Options) bool { return o.Mode == ModeMailq }},
		{"/usr/bin/newaliases", nil, func(o *Options) bool { return o.Mode == ModeNewAlias }},
		{"sendmail", []string{"-bi"}, func(o *Options) bool { return o.Mode == ModeNewAlias }},
		{"sendmail", []string{"-I"}, func(o *Options) bool { return o.Mode == ModeNewAlias }},
		{"sendmail", []string{"-bs"}, func(o *Options) bool { return o.Mode == ModeSMTP }},
		{"sendmail", []string{"-q"}, func(o *Options) bool { return o.Mode == ModeFlush }},
		{"sendmail", []string{"-q30m"}, func(o *Options) bool { return o.Mode == ModeIgnore }},
		{"sendmail", []string{"-bd", "-q30m"}, func(o *Options) bool { return o.Mode == ModeDaemon }},
		{"sendmail", []string{"-C", "/etc/x/main.cf", "-bp"}, func(o *Options) bool { return o.ConfigDir == "/etc/x" }},
		{"sendmail", []string{"-C/etc/y", "-bp"}, func(o *Options) bool { return o.ConfigDir == "/etc/y" }},
		{"sendmail", []string{"-B", "8BITMIME", "-G", "-v", "-v", "b"}, func(o *Options) bool {
			return o.BodyType == "8BITMIME" && o.Remote && o.Verbose == 2 && !o.Trace
		}},
		// -v once asks for the delivery report (Postfix's RECORD flag),
		// in delivery mode only; twice is verbose output, no report.
		{"sendmail", []string{"-v", "b"}, func(o *Options) bool { return o.Verbose == 1 && o.Trace }},
		{"sendmail", []string{"-tv"}, func(o *Options) bool { return o.Extract && o.Trace }},
		{"sendmail", []string{"-vv", "b"}, func(o *Options) bool { return o.Verbose == 2 && !o.Trace }},
		{"sendmail", []string{"-v", "-bs"}, func(o *Options) bool { return o.Mode == ModeSMTP && !o.Trace }},
		{"sendmail", []string{"b"}, func(o *Options) bool { return !o.Trace }},
		{"sendmail", []string{"-O", "SMTPUTF8=yes", "b"}, func(o *Options) bool { return o.SMTPUTF8 }},
		{"sendmail", []string{"-oA/etc/aliases2", "-bi"}, func(o *Options) bool { return o.AliasFile == "/etc/aliases2" }},
		{"sendmail", []string{"-L", "tag", "-h", "5", "-om", "-m", "-U", "b"}, func(o *Options) bool { return slices.Equal(o.Recipients, []string{"b"}) }},
		{"sendmail", []string{"--", "-notanoption"}, func(o *Options) bool { return slices.Equal(o.Recipients, []string{"-notanoption"}) }},
		{"sendmail", []string{"a", "-t"}, func(o *Options) bool { return !o.Extract && slices.Equal(o.Recipients, []string{"a", "-t"}) }},
	}
	for _, tt := range tests {
		o, err := ParseArgs(tt.argv0, tt.args)
		if err != nil {
			t.Errorf("%s %q: %v", tt.argv0, tt.args, err)
			continue
		}
		if !tt.check(o) {
			t.Errorf("%s %q: unexpected %+v", tt.argv0, tt.args, o)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := [][]string{
		{"-n"},
		{"-Z"},
		{"-f"},
		{"-B", "BINARY"},
		{"-bz"},
		{"-bp", "rcpt"},
		{"-bp", "-t"},
		{"-XV"},
		{"-qRexample.org"},
		{"-qX"},
		{"-oA"},
	}
	for _, args := range tests {
		_, err := ParseArgs("sendmail", args)
		var e *Error
		if !errors.As(err, &e) || e.Code != ExUsage {
			t.Errorf("%q: got %v, want an EX_USAGE error", args, err)
		}
	}
}
