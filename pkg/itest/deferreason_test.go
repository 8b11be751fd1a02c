package itest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deferReason returns the reason of the last status=deferred line for
// rcpt of message id, waiting for one to be logged.
func (in *Instance) deferReason(id, rcpt string) string {
	in.t.Helper()
	line := id + ": to=<" + rcpt + ">, "
	deadline := time.Now().Add(15 * time.Second)
	for {
		var last string
		for _, l := range strings.Split(in.Log(), "\n") {
			if strings.Contains(l, line) && strings.Contains(l, ", status=deferred (") && strings.HasSuffix(l, ")") {
				last = l
			}
		}
		if last != "" {
			_, why, _ := strings.Cut(last, ", status=deferred (")
			return strings.TrimSuffix(why, ")")
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("no deferral of %s logged\n%s", line, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reasonLine is mailq's line for a deferral reason: "(reason)"
// right-aligned to column 78, as Postfix's showq_compat.
func reasonLine(why string) string {
	return strings.Repeat(" ", max(76-len(why), 0)) + "(" + why + ")\n"
}

// rcptLine is mailq's line for a recipient.
func rcptLine(addr string) string { return strings.Repeat(" ", 47) + addr + "\n" }

// A deferred message shows why in mailq, sendmail -bp, postern queue and
// postern queue -j, with the reasons of its last attempt only; the
// reasons go away with the message.
func TestDeferReasonsInMailq(t *testing.T) {
	// A destination that refuses connections: a port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := l.Addr().(*net.TCPAddr).Port
	l.Close()
	in := NewInstance(t, Options{
		MainCf:   fmt.Sprintf("relayhost = [127.0.0.1]:%d\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h", refusing),
		MasterCf: "smtp      unix  -       -       n       -       -       smtp",
	})
	unblock := in.block("user")
	text, err := send(t, in.Addr, "a@example.org", []string{"r1@example.net", "r2@example.net", "user@itest.test"}, "Subject: deferred\r\n\r\nlater\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	in.waitQueued("deferred", id)
	refused := in.deferReason(id, "r1@example.net")
	if want := fmt.Sprintf("connect to 127.0.0.1[127.0.0.1]:%d: Connection refused", refusing); refused != want {
		t.Errorf("smtp deferral reason %q, want %q", refused, want)
	}
	if r2 := in.deferReason(id, "r2@example.net"); r2 != refused {
		t.Errorf("r2's reason %q, r1's %q", r2, refused)
	}
	blocked := in.deferReason(id, "user@itest.test")

	// The recipients of each reason under it, in either order of the
	// two agents' answers.
	smtpGroup := []string{
		reasonLine(refused) + rcptLine("r1@example.net") + rcptLine("r2@example.net"),
		reasonLine(refused) + rcptLine("r2@example.net") + rcptLine("r1@example.net"),
	}
	virtualGroup := reasonLine(blocked) + rcptLine("user@itest.test")
	check := func(what, out string, smtpGroup []string, virtualGroup string) {
		t.Helper()
		if !strings.Contains(out, id+" ") || !strings.HasSuffix(out, "in 1 Request.\n") {
			t.Errorf("%s: message missing:\n%s", what, out)
		}
		if !strings.Contains(out, smtpGroup[0]) && !strings.Contains(out, smtpGroup[1]) {
			t.Errorf("%s lacks\n%s\n%s", what, smtpGroup[0], out)
		}
		if virtualGroup != "" && !strings.Contains(out, virtualGroup) {
			t.Errorf("%s lacks\n%s\n%s", what, virtualGroup, out)
		}
		if virtualGroup == "" && (strings.Contains(out, "user@itest.test") || strings.Contains(out, blocked)) {
			t.Errorf("%s: delivered recipient or stale reason listed:\n%s", what, out)
		}
	}
	check("postern queue", in.mustPostern("queue"), smtpGroup, virtualGroup)
	if r := in.Sendmail("mailq", "", nil); r.Code != 0 {
		t.Errorf("mailq: exit %d: %s", r.Code, r.Stderr)
	} else {
		check("mailq", r.Stdout, smtpGroup, virtualGroup)
	}
	if r := in.Sendmail("sendmail", "", nil, "-bp"); r.Code != 0 {
		t.Errorf("sendmail -bp: exit %d: %s", r.Code, r.Stderr)
	} else {
		check("sendmail -bp", r.Stdout, smtpGroup, virtualGroup)
	}
	var obj struct {
		QueueID    string `json:"queue_id"`
		Recipients []struct {
			Address     string  `json:"address"`
			DelayReason *string `json:"delay_reason"`
		} `json:"recipients"`
	}
	out := in.mustPostern("queue", "-j")
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("postern queue -j: %v\n%s", err, out)
	}
	want := map[string]string{"r1@example.net": refused, "r2@example.net": refused, "user@itest.test": blocked}
	if obj.QueueID != id || len(obj.Recipients) != len(want) {
		t.Errorf("postern queue -j: %s", out)
	}
	for _, r := range obj.Recipients {
		if r.DelayReason == nil || *r.DelayReason != want[r.Address] {
			t.Errorf("postern queue -j: %s: delay_reason %v, want %q", r.Address, r.DelayReason, want[r.Address])
		}
	}

	// The next attempt starts a new log: user@itest.test is delivered
	// and its reason is gone; the smtp recipients are deferred again.
	unblock()
	before := strings.Count(in.Log(), id+": to=<r1@example.net>")
	in.mustPostern("flush")
	in.WaitMaildir("itest.test/user", 1, 10*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(in.Log(), id+": to=<r1@example.net>") == before || strings.Count(in.Log(), id+": to=<r2@example.net>") == before {
		if time.Now().After(deadline) {
			t.Fatalf("no second attempt for the smtp recipients\n%s", in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.waitQueued("deferred", id)
	// qmgr moves the file to deferred/ after its last answer is recorded.
	check("postern queue after the second attempt", in.mustPostern("queue"), smtpGroup, "")

	in.mustPostern("queue", "delete", id)
	if _, err := os.Stat(filepath.Join(in.Dir, "queue", "defer", id)); !os.IsNotExist(err) {
		t.Errorf("defer log left after delete: %v", err)
	}
}
