package dnsresolve_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"postern/pkg/dnsresolve"
	"postern/pkg/dnsresolve/dnstest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestLookupMX(t *testing.T) {
	srv := dnstest.New(t,
		"example.com. MX 20 mx2.example.com.",
		"example.com. MX 10 mx1a.example.com.",
		"example.com. MX 10 mx1b.example.com.",
		"example.com. A 192.0.2.9",
		"nomx.example. A 192.0.2.1",
		"nomx.example. AAAA 2001:db8::1",
		"null.example. MX 0 .",
		"v6only.example. AAAA 2001:db8::2",
	)
	r, err := dnsresolve.New(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 40 {
		mx, err := r.LookupMX(ctx(t), "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if len(mx) != 3 || mx[0].Pref != 10 || mx[1].Pref != 10 || mx[2].Host != "mx2.example.com" {
			t.Fatalf("LookupMX = %v", mx)
		}
		seen[mx[0].Host] = true
	}
	if !seen["mx1a.example.com"] || !seen["mx1b.example.com"] {
		t.Errorf("equal preferences never shuffled: first hosts seen %v", seen)
	}

	mx, err := r.LookupMX(ctx(t), "nomx.example")
	if err != nil || len(mx) != 0 {
		t.Errorf("LookupMX(no MX) = %v, %v; want nothing, no error", mx, err)
	}
	if _, err := r.LookupMX(ctx(t), "null.example"); !errors.Is(err, dnsresolve.ErrNullMX) {
		t.Errorf("LookupMX(null MX) error = %v; want ErrNullMX", err)
	}
	_, err = r.LookupMX(ctx(t), "nx.example")
	var de *dnsresolve.Error
	if !errors.As(err, &de) || !de.NotFound || de.Temporary {
		t.Errorf("LookupMX(NXDOMAIN) error = %#v", err)
	} else if got, want := de.Error(), "Name service error for name=nx.example type=MX: Host not found"; got != want {
		t.Errorf("error text %q; want %q", got, want)
	}
	srv.ServFail("broken.example")
	_, err = r.LookupMX(ctx(t), "broken.example")
	if !errors.As(err, &de) || !de.Temporary {
		t.Errorf("LookupMX(SERVFAIL) error = %#v", err)
	}
}

func TestLookupIP(t *testing.T) {
	srv := dnstest.New(t,
		"both.example. A 192.0.2.1",
		"both.example. AAAA 2001:db8::1",
		"v6only.example. AAAA 2001:db8::2",
	)
	r, err := dnsresolve.New(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host   string
		v4, v6 bool
		want   string
		nf     bool
	}{
		{"both.example", true, true, "[192.0.2.1 2001:db8::1]", false},
		{"both.example", true, false, "[192.0.2.1]", false},
		{"both.example", false, true, "[2001:db8::1]", false},
		{"v6only.example", true, false, "", true},
		{"v6only.example", true, true, "[2001:db8::2]", false},
		{"none.example", true, true, "", true},
		{"192.0.2.7", true, true, "[192.0.2.7]", false},
	}
	for _, c := range cases {
		got, err := r.LookupIP(ctx(t), c.host, c.v4, c.v6)
		if c.nf {
			var de *dnsresolve.Error
			if !errors.As(err, &de) || !de.NotFound {
				t.Errorf("LookupIP(%s, %v, %v) = %v, %v; want not found", c.host, c.v4, c.v6, got, err)
			}
			continue
		}
		if err != nil || fmtAddrs(got) != c.want {
			t.Errorf("LookupIP(%s, %v, %v) = %v, %v; want %s", c.host, c.v4, c.v6, got, err, c.want)
		}
	}
}

func TestUnreachableServerIsTemporary(t *testing.T) {
	// A port nobody answers on: a closed UDP port fails at once with
	// ECONNREFUSED on loopback.
	r, err := dnsresolve.New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LookupMX(ctx(t), "example.com")
	var de *dnsresolve.Error
	if !errors.As(err, &de) || !de.Temporary {
		t.Errorf("unreachable server: %v; want temporary error", err)
	}
}

func TestResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1 attempts:3\n"), 0o644)
	r, err := dnsresolve.NewFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Servers(); len(got) != 2 || got[0] != "192.0.2.53:53" || got[1] != "[2001:db8::53]:53" {
		t.Errorf("servers %v", got)
	}
	r, err = dnsresolve.New("127.0.0.1:5353, 127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Servers(); len(got) != 2 || got[0] != "127.0.0.1:5353" || got[1] != "127.0.0.2:53" {
		t.Errorf("servers %v", got)
	}
}

func fmtAddrs[T any](a []T) string {
	s := "["
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += toString(x)
	}
	return s + "]"
}

func toString(x any) string {
	if s, ok := x.(interface{ String() string }); ok {
		return s.String()
	}
	return ""
}
