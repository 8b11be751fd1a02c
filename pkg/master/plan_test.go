package master

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/mastercf"
)

func loadConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func parseConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(text), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStockMasterCF runs the benchmark's master.cf (Postfix 3.7's stock
// service list) through Resolve: Postern's programs run, every other
// program is skipped with one line, and nothing fails.
func TestStockMasterCF(t *testing.T) {
	text, err := os.ReadFile("testdata/bench-master.cf.in")
	if err != nil {
		t.Fatal(err)
	}
	defs, problems, err := mastercf.Parse(strings.NewReader(strings.ReplaceAll(string(text), "@PORT@", "2525")), "master.cf", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Errorf("problems: %v", problems)
	}
	daemonDir := t.TempDir()
	for _, p := range []string{"smtpd", "cleanup", "qmgr", "pickup", "smtp", "local", "showq"} {
		if err := os.WriteFile(filepath.Join(daemonDir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := parseConfig(t, "queue_directory = /q\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n")
	wantRun := map[string]string{ // service key → program path base, argv0
		"127.0.0.1:2525/inet": "smtpd smtpd",
		"pickup/unix":         "pickup pickup",
		"cleanup/unix":        "cleanup cleanup",
		"qmgr/unix":           "qmgr qmgr",
		"smtp/unix":           "smtp smtp",
		"relay/unix":          "smtp smtp",
		"local/unix":          "local local",
		"virtual/unix":        "local virtual",
		"lmtp/unix":           "smtp lmtp",
		"showq/unix":          "showq showq",
	}
	ran := map[string]bool{}
	for _, d := range defs {
		p := Resolve(d, daemonDir)
		if want, ok := wantRun[d.Key()]; ok {
			if got := filepath.Base(p.Path) + " " + p.Argv0; p.Skip != "" || got != want {
				t.Errorf("%s: runs %q (skip %q), want %q", d.Key(), got, p.Skip, want)
			}
			if _, err := Addresses(cfg, d); err != nil {
				t.Errorf("%s: %v", d.Key(), err)
			}
			ran[d.Key()] = true
			continue
		}
		if p.Skip == "" || strings.Contains(p.Skip, "\n") || !strings.Contains(p.Skip, d.Key()) || !strings.Contains(p.Skip, d.Command) {
			t.Errorf("%s (%s): skip line %q, want one line naming the service and program", d.Key(), d.Command, p.Skip)
		}
		if strings.Contains(p.Skip, "no program") {
			t.Errorf("%s: generic skip %q; want what does its job", d.Key(), p.Skip)
		}
	}
	if len(ran) != len(wantRun) {
		t.Errorf("ran %v, want %v", ran, wantRun)
	}
	if len(defs)-len(ran) != 15 {
		t.Errorf("%d skipped services, want 15", len(defs)-len(ran))
	}
}

func TestResolveMissing(t *testing.T) {
	dir := t.TempDir()
	p := Resolve(mastercf.Service{Name: "virtual", Type: "unix", Command: "virtual"}, dir)
	if p.Skip == "" || !strings.Contains(p.Skip, "no Postern program local") {
		t.Errorf("virtual without local: %+v", p)
	}
	p = Resolve(mastercf.Service{Name: "x", Type: "unix", Command: "custom"}, dir)
	if !strings.Contains(p.Skip, "no program custom in "+dir) {
		t.Errorf("unknown program: %+v", p)
	}
	p = Resolve(mastercf.Service{Name: "x", Type: "unix", Command: "../bin/sh"}, dir)
	if p.Skip == "" {
		t.Errorf("command with a slash: %+v", p)
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		main string
		svc  mastercf.Service
		want []Address
		err  bool
	}{
		{"", mastercf.Service{Name: "127.0.0.1:2525", Type: "inet"}, []Address{{"tcp4", "127.0.0.1:2525"}}, false},
		{"", mastercf.Service{Name: "[::1]:25", Type: "inet"}, []Address{{"tcp6", "[::1]:25"}}, false},
		{"", mastercf.Service{Name: "mx.example:25", Type: "inet"}, []Address{{"tcp", "mx.example:25"}}, false},
		{"inet_interfaces = all\ninet_protocols = all", mastercf.Service{Name: "smtp", Type: "inet"}, []Address{{"tcp", ":smtp"}}, false},
		{"inet_interfaces = all\ninet_protocols = ipv4", mastercf.Service{Name: "25", Type: "inet"}, []Address{{"tcp4", "0.0.0.0:25"}}, false},
		{"inet_interfaces = all\ninet_protocols = ipv6", mastercf.Service{Name: "25", Type: "inet"}, []Address{{"tcp6", "[::]:25"}}, false},
		{"inet_interfaces = loopback-only\ninet_protocols = all", mastercf.Service{Name: "25", Type: "inet"}, []Address{{"tcp4", "127.0.0.1:25"}, {"tcp6", "[::1]:25"}}, false},
		{"inet_interfaces = 127.0.0.1, [::1], 10.0.0.1\ninet_protocols = ipv4", mastercf.Service{Name: "25", Type: "inet"}, []Address{{"tcp4", "127.0.0.1:25"}, {"tcp4", "10.0.0.1:25"}}, false},
		{"inet_protocols = ipx", mastercf.Service{Name: "25", Type: "inet"}, nil, true},
		{"queue_directory = /q", mastercf.Service{Name: "qmgr", Type: "unix", Private: false}, []Address{{"unix", "/q/public/qmgr"}}, false},
		{"queue_directory = /q", mastercf.Service{Name: "smtp", Type: "unix", Private: true}, []Address{{"unix", "/q/private/smtp"}}, false},
		{"queue_directory = /q", mastercf.Service{Name: "pickup", Type: "fifo", Private: true}, []Address{{"unix", "/q/private/pickup"}}, false},
		{"", mastercf.Service{Name: "postlog", Type: "unix-dgram"}, nil, true},
	}
	for _, tc := range tests {
		got, err := Addresses(parseConfig(t, tc.main), tc.svc)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Addresses(%q, %s) = %v, %v; want %v, error %v", tc.main, tc.svc.Key(), got, err, tc.want, tc.err)
		}
	}
	if a := DialAddress(Address{"tcp", ":25"}); a.Address != "127.0.0.1:25" {
		t.Errorf("DialAddress :25 = %v", a)
	}
	if a := DialAddress(Address{"tcp6", "[::]:25"}); a.Address != "[::1]:25" {
		t.Errorf("DialAddress [::]:25 = %v", a)
	}
}
