package handoff

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"postern/pkg/ipc"
)

func TestReceiveOverride(t *testing.T) {
	tests := []struct {
		opts    []string
		flags   Flags
		noRcpt  bool
		wantErr bool
	}{
		{nil, External, false, false},
		{[]string{"no_unknown_recipient_checks", "no_header_body_checks", "no_address_mappings"}, FlagMilter, true, false},
		{[]string{"no_milters"}, FlagChecks | FlagMap | FlagBCC, false, false},
		{[]string{"no_address_mappings"}, FlagChecks | FlagMilter, false, false},
		{[]string{"no_header_body_cheks"}, 0, false, true},
	}
	for _, tc := range tests {
		f, n, err := ReceiveOverride(tc.opts)
		if (err != nil) != tc.wantErr || (err == nil && (f != tc.flags || n != tc.noRcpt)) {
			t.Errorf("%v: %v %v %v", tc.opts, f, n, err)
		}
	}
}

// TestFilterAndFlags: filter and flags cross the protocol; a request
// without flags (a notice) is read as Internal.
func TestFilterAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cleanup")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *Request, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c := ipc.NewConn(conn, ipc.Options{Timeout: 5 * time.Second, MaxFrame: 1 << 20})
			ipc.Hello(c, Service)
			req, err := ReadRequest(c, 10)
			if err != nil {
				t.Error(err)
				conn.Close()
				got <- nil
				continue
			}
			SendID(c, "ID1")
			io.Copy(io.Discard, ContentReader(c))
			Reply(c, Result{Status: OK, QueueID: "ID1"}, false)
			conn.Close()
			got <- req
		}
	}()
	for _, tc := range []struct {
		req       Request
		wantFlags Flags
	}{
		{Request{Sender: "a@example.org", Filter: "smtp:[127.0.0.1]:10024", Flags: FlagMilter, HasFlags: true}, FlagMilter},
		{Request{Sender: "a@example.org", Flags: 0, HasFlags: true}, 0},
		{Request{Sender: ""}, Internal},
	} {
		tc.req.Recipients = []Recipient{{Addr: "b@example.org"}}
		s, err := Open(path, &tc.req, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("Subject: x\n\nbody\n"))
		if res, err := s.Close(); err != nil || res.Status != OK {
			t.Fatalf("%+v %v", res, err)
		}
		r := <-got
		if r == nil || r.Filter != tc.req.Filter || r.Flags != tc.wantFlags || !r.HasFlags != !tc.req.HasFlags {
			t.Errorf("sent %+v, read %+v", tc.req, r)
		}
	}
}

// FuzzReadRequest: whatever a client sends in its open frame, ReadRequest
// returns an error or a request whose flags cleanup knows; never a panic.
func FuzzReadRequest(f *testing.F) {
	f.Add("smtp:[127.0.0.1]:10024", "15", "a@example.org")
	f.Add("", "", "")
	f.Add("x", "99999999999999999999", "\x00")
	f.Add("x", "-1", "b")
	f.Fuzz(func(t *testing.T, filter, flags, addr string) {
		client, srv := net.Pipe()
		defer client.Close()
		defer srv.Close()
		go func() {
			c := ipc.NewConn(client, ipc.Options{Timeout: 5 * time.Second, MaxFrame: 1 << 20})
			c.Send(ipc.Attrs{{Name: "req", Value: "open"}, {Name: "filter", Value: filter}, {Name: "flags", Value: flags}})
			c.Send(ipc.Attrs{{Name: "req", Value: "rcpt"}, {Name: "addr", Value: addr}})
			c.Write(ipc.Attrs{{Name: "req", Value: "start"}})
		}()
		c := ipc.NewConn(srv, ipc.Options{Timeout: 5 * time.Second, MaxFrame: 1 << 20})
		req, err := ReadRequest(c, 10)
		if err != nil {
			return
		}
		if req.Flags&^External != 0 || !req.HasFlags || req.Filter != filter || len(req.Recipients) != 1 {
			t.Errorf("request %+v from flags %q", req, flags)
		}
	})
}
