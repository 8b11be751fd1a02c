package maillog

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeSampleLog logs one small day of mail traffic from several daemons
// into one maillog_file, as the daemons of one instance would.
func writeSampleLog(t *testing.T, syslogName string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	log := map[string]*Logger{}
	for _, prog := range []string{"smtpd", "cleanup", "qmgr", "local", "smtp", "bounce", "pickup"} {
		l, err := New(Options{SyslogName: syslogName, Program: prog, File: path, FilePrefixes: []string{dir},
			Hostname: "mx.example.org", Now: func() time.Time { return testTime }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		log[prog] = l
	}
	c := Client{Name: "client.example.com", Addr: "192.0.2.10"}
	ms := time.Millisecond

	// Message 1: received over SMTP, two recipients delivered locally.
	log["smtpd"].Connect(c)
	log["smtpd"].ClientLine("4BzQ1c2XJhz01", c, "", "")
	log["cleanup"].MessageID("4BzQ1c2XJhz01", "<m1@example.com>")
	log["qmgr"].Queued("4BzQ1c2XJhz01", "alice@example.com", 1000, 2)
	for _, to := range []string{"bob@example.org", "carol@example.org"} {
		log["local"].Delivered("4BzQ1c2XJhz01", Delivery{To: to, Relay: "local", Delay: 150 * ms,
			Delays: [4]time.Duration{50 * ms, 10 * ms, 0, 90 * ms}, DSN: "2.0.0", Status: "sent", Text: "delivered to maildir"})
	}
	log["qmgr"].Removed("4BzQ1c2XJhz01")

	// Message 2: authenticated submission, deferred once, then sent.
	log["smtpd"].ClientLine("4BzQ1c2XJhz02", c, "PLAIN", "alice")
	log["cleanup"].MessageID("4BzQ1c2XJhz02", "<m2@example.com>")
	log["qmgr"].Queued("4BzQ1c2XJhz02", "alice@example.com", 2000, 1)
	log["smtp"].Delivered("4BzQ1c2XJhz02", Delivery{To: "dave@example.net", Relay: "none", Delay: 3 * time.Second,
		Delays: [4]time.Duration{0, 0, 3 * time.Second, 0}, DSN: "4.4.1", Status: "deferred",
		Text: "connect to mx.example.net[198.51.100.2]:25: Connection refused"})
	log["smtp"].Delivered("4BzQ1c2XJhz02", Delivery{To: "dave@example.net", Relay: "mx.example.net[198.51.100.2]:25",
		Delay: 310 * time.Second, Delays: [4]time.Duration{300 * time.Second, 0, 2 * time.Second, 8 * time.Second},
		DSN: "2.0.0", Status: "sent", Text: "250 2.0.0 Ok: queued as ABC"})
	log["qmgr"].Removed("4BzQ1c2XJhz02")

	// Message 3: from sendmail, bounced.
	log["pickup"].Pickup("4BzQ1c2XJhz03", 1000, "erin")
	log["cleanup"].MessageID("4BzQ1c2XJhz03", "<m3@example.org>")
	log["qmgr"].Queued("4BzQ1c2XJhz03", "erin@example.org", 500, 1)
	log["smtp"].Delivered("4BzQ1c2XJhz03", Delivery{To: "nobody@example.net", Relay: "mx.example.net[198.51.100.2]:25",
		Delay: 1 * time.Second, DSN: "5.1.1", Status: "bounced",
		Text: "host mx.example.net[198.51.100.2] said: 550 5.1.1 User unknown (in reply to RCPT TO command)"})
	log["bounce"].BounceNotice("4BzQ1c2XJhz03", "4BzQ1c2XJhz04")
	log["qmgr"].Removed("4BzQ1c2XJhz03")

	// Two rejections and a session summary.
	bad := Client{Addr: "203.0.113.66"}
	log["smtpd"].Connect(bad)
	log["smtpd"].Reject("", "RCPT", bad, "554 5.7.1 <victim@example.net>: Relay access denied",
		"spammer@example.biz", "victim@example.net", "ESMTP", "spam.example")
	log["smtpd"].Reject("", "RCPT", bad, "550 5.1.1 <nouser@example.org>: Recipient address rejected: User unknown in local recipient table",
		"spammer@example.biz", "nouser@example.org", "ESMTP", "spam.example")
	log["smtpd"].LostConnection("", bad, "RCPT")
	log["smtpd"].Disconnect(bad, []Count{{"ehlo", 1, 1}, {"mail", 1, 1}, {"rcpt", 0, 2}})
	log["qmgr"].Warning("4BzQ1c2XJhz05: malformed queue file moved to corrupt")
	log["smtpd"].Disconnect(c, []Count{{"ehlo", 2, 2}, {"auth", 1, 1}, {"mail", 2, 2}, {"rcpt", 3, 3}, {"data", 2, 2}, {"quit", 1, 1}})
	return path
}

// The patterns below restate what Postfix log consumers match on, so that
// a change in our text that would blind them fails here even where those
// tools are not installed. Each names the consumer and the line it reads.
var consumerPatterns = []struct {
	what string
	re   *regexp.Regexp
	min  int // lines that must match; -1: all
}{
	// pflogsumm: the line prefix, "Mmm dd hh:mm:ss host name/cmd[pid]: qid".
	{"pflogsumm prefix", regexp.MustCompile(`^[A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2} \S+ (?:postern|postfix)/([^\[:]*)\[\d+\]: ([^:\s]+)`), -1},
	// pflogsumm: received messages.
	{"pflogsumm client=", regexp.MustCompile(`/smtpd\[\d+\]: \w+: client=(.+?)(,|$)`), 2},
	// pflogsumm: sizes and senders.
	{"pflogsumm from/size", regexp.MustCompile(`: \w+: from=<([^>]*)>, size=(\d+)`), 3},
	// pflogsumm, postfix_exporter: per-recipient status.
	{"pflogsumm to/status", regexp.MustCompile(`to=<([^>]*)>, (?:orig_to=<[^>]*>, )?relay=([^,]+), (?:conn_use=[^,]+, )?delay=([^,]+), (?:delays=[^,]+, )?(?:dsn=[^,]+, )?status=(\S+)(.*)$`), 5},
	// postfix_exporter: delays=a/b/c/d as four floats.
	{"postfix_exporter delays", regexp.MustCompile(`, delays=([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+), dsn=\d\.\d{1,3}\.\d{1,3}, status=`), 5},
	// pflogsumm, fail2ban postfix filter: smtpd rejects.
	{"fail2ban reject", regexp.MustCompile(`/smtpd\[\d+\]: NOQUEUE: reject: RCPT from \S+\[(\S+)\]: 5\d\d 5\.\d\.\d .*; from=<\S*> to=<\S+> proto=ESMTP helo=<\S*>$`), 2},
	// postfix_exporter: session end counters.
	{"postfix_exporter disconnect", regexp.MustCompile(`/smtpd\[\d+\]: disconnect from \S+\[\S+\]( \w+=\d+(/\d+)?)+ commands=\d+(/\d+)?$`), 2},
	// pflogsumm: warnings.
	{"pflogsumm warning", regexp.MustCompile(`/qmgr\[\d+\]: warning: `), 1},
	// postfix_exporter, fail2ban: lost connection.
	{"lost connection", regexp.MustCompile(`/smtpd\[\d+\]: NOQUEUE: lost connection after RCPT from \S+\[\S+\]$`), 1},
}

func TestConsumerPatterns(t *testing.T) {
	for _, name := range []string{"postern", "postfix"} {
		b, err := os.ReadFile(writeSampleLog(t, name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		for _, p := range consumerPatterns {
			n := 0
			for _, l := range lines {
				if p.re.MatchString(l) {
					n++
				}
			}
			if p.min < 0 && n != len(lines) {
				t.Errorf("syslog_name %s: %s matches %d of %d lines", name, p.what, n, len(lines))
			}
			if n < p.min {
				t.Errorf("syslog_name %s: %s matches %d lines, want at least %d", name, p.what, n, p.min)
			}
		}
	}
}

// TestPflogsumm runs Debian's pflogsumm, when installed, on the sample log
// and checks its grand totals.
func TestPflogsumm(t *testing.T) {
	bin, err := exec.LookPath("pflogsumm")
	if err != nil {
		t.Skip("pflogsumm not installed (apt-get install pflogsumm)")
	}
	for _, tc := range []struct{ name, flag string }{{"postern", "--syslog-name=postern"}, {"postfix", ""}} {
		path := writeSampleLog(t, tc.name)
		args := []string{path}
		if tc.flag != "" {
			args = []string{tc.flag, path}
		}
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("pflogsumm: %v\n%s", err, out)
		}
		got := map[string]int{}
		re := regexp.MustCompile(`^\s*(\d+)\s+(received|delivered|deferred|bounced|rejected|bytes received|bytes delivered|senders|recipients)\b`)
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				if _, seen := got[m[2]]; !seen {
					got[m[2]], _ = strconv.Atoi(m[1])
				}
			}
		}
		want := map[string]int{
			"received": 3, "delivered": 3, "deferred": 1, "bounced": 1, "rejected": 2,
			"bytes received": 3500, "bytes delivered": 4000, "senders": 2, "recipients": 3,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("syslog_name %s: pflogsumm %s = %d, want %d", tc.name, k, got[k], v)
			}
		}
		if t.Failed() {
			t.Logf("pflogsumm output:\n%s", out)
		}
		if !strings.Contains(string(out), "malformed queue file moved to corrupt") {
			t.Errorf("syslog_name %s: pflogsumm did not report the warning", tc.name)
		}
	}
}

// TestHelperWriter is not a test: the concurrency and fallback tests run
// the test binary again with MAILLOG_HELPER set, to log from a second
// process.
func TestHelperWriter(t *testing.T) {
	mode := os.Getenv("MAILLOG_HELPER")
	if mode == "" {
		t.Skip("helper process only")
	}
	switch mode {
	case "append":
		path := os.Getenv("MAILLOG_FILE")
		l, err := New(Options{Program: "helper", File: path, FilePrefixes: []string{filepath.Dir(path)},
			Hostname: "mx", Now: func() time.Time { return testTime }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for i := 0; i < linesPerWriter; i++ {
			l.Printf("writer p line %d %s", i, filler)
		}
		l.Close()
	case "nosyslog":
		l, err := New(Options{Program: "helper", SyslogPath: os.Getenv("MAILLOG_SYSLOG"),
			Hostname: "mx", Now: func() time.Time { return testTime }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		l.Printf("first")
		l.Warning("second")
		l.Close()
	}
}

const linesPerWriter = 500

var filler = strings.Repeat("x", 1500)

func helper(t *testing.T, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// TestConcurrentAppend has goroutines of this process and a second
// process append long lines to one maillog_file at once, and checks that
// every line arrives whole.
func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cmd := helper(t, "MAILLOG_HELPER=append", "MAILLOG_FILE="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{Program: "smtpd", File: path, FilePrefixes: []string{dir},
		Hostname: "mx", Now: func() time.Time { return testTime }})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 4
	done := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < linesPerWriter; i++ {
				l.Printf("writer %d line %d %s", g, i, filler)
			}
		}()
	}
	for g := 0; g < goroutines; g++ {
		<-done
	}
	l.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^Mar 07 09:05:03 mx postern/(smtpd|helper)\[\d+\]: writer (\w+) line (\d+) (x+)$`)
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil || len(m[4]) != len(filler) {
			t.Fatalf("torn line: %.120q", sc.Text())
		}
		seen[m[2]]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"0", "1", "2", "3", "p"} {
		if seen[w] != linesPerWriter {
			t.Errorf("writer %s: %d lines, want %d", w, seen[w], linesPerWriter)
		}
	}
}

// TestSyslogFallback runs a process whose syslog socket does not exist:
// its lines go to stderr after one notice.
func TestSyslogFallback(t *testing.T) {
	cmd := helper(t, "MAILLOG_HELPER=nosyslog", "MAILLOG_SYSLOG="+filepath.Join(t.TempDir(), "nolog"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	lines := regexp.MustCompile(`(?m)^Mar 07 09:05:03 mx postern/helper\[\d+\]: (.*)$`).FindAllStringSubmatch(stderr.String(), -1)
	var texts []string
	for _, m := range lines {
		texts = append(texts, m[1])
	}
	if len(texts) != 3 || !strings.HasPrefix(texts[0], "warning: cannot log to syslog socket") ||
		texts[1] != "first" || texts[2] != "warning: second" {
		t.Errorf("stderr lines %q", texts)
	}
}
