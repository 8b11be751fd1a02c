package admin

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// The embedded default instance behind `postern demo DIR` (and `make
// run`): unprivileged, loopback only, a high port, everything under DIR.
const demoMainCf = `# Postern demo instance, written by "postern demo". Everything lives under
# {{DIR}}; nothing listens beyond 127.0.0.1.
queue_directory = {{DIR}}/queue
data_directory = {{DIR}}/data
maillog_file = {{DIR}}/maillog
maillog_file_prefixes = {{DIR}}

myhostname = postern.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# Mail for example.test is stored in Maildirs under {{DIR}}/mail.
virtual_mailbox_domains = example.test
virtual_mailbox_base = {{DIR}}/mail
virtual_mailbox_maps = texthash:{{DIR}}/conf/vmailbox
virtual_minimum_uid = 0
virtual_uid_maps = static:{{UID}}
virtual_gid_maps = static:{{GID}}
{{OWNER}}
`

const demoMasterCf = `# Postern demo instance: SMTP on 127.0.0.1:{{PORT}}.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{{PORT}} inet n -     n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
virtual   unix  -       n       n       -       -       virtual
local     unix  -       n       n       -       -       local
`

const demoVmailbox = `# user@domain    mailbox path under virtual_mailbox_base (a trailing / means Maildir)
you@example.test        example.test/you/
postmaster@example.test example.test/postmaster/
`

// Demo writes the demo instance into dir if it is not there yet and starts
// it.
func Demo(dir string, stdout, stderr io.Writer) int {
	abs, err := filepath.Abs(dir)
	if err != nil {
		fmt.Fprintf(stderr, "postern: demo: %v\n", err)
		return 1
	}
	conf := filepath.Join(abs, "conf")
	if _, err := os.Stat(filepath.Join(conf, "main.cf")); os.IsNotExist(err) {
		if err := writeDemo(abs, 2525); err != nil {
			fmt.Fprintf(stderr, "postern: demo: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "postern: wrote a demo instance to %s\n", abs)
	}
	if rc := Start(conf, stdout, stderr); rc != 0 {
		return rc
	}
	fmt.Fprintf(stdout, `postern: the demo instance is running: SMTP on 127.0.0.1:2525
  send:  swaks --server 127.0.0.1:2525 --to you@example.test
  read:  ls %s/mail/example.test/you/new/
  log:   %s/maillog
  stop:  ./bin/postern -c %s stop
`, abs, abs, conf)
	return 0
}

func writeDemo(dir string, port int) error {
	uid, gid := os.Getuid(), os.Getgid()
	owner := ""
	if uid == 0 {
		// As root the workers need an unprivileged account to run as; the
		// demo uses nobody when the postern account does not exist.
		if _, err := user.Lookup("postern"); err != nil {
			owner = "mail_owner = nobody"
			if u, err := user.Lookup("nobody"); err == nil {
				fmt.Sscan(u.Uid, &uid)
				fmt.Sscan(u.Gid, &gid)
			}
		} else {
			u, _ := user.Lookup("postern")
			fmt.Sscan(u.Uid, &uid)
			fmt.Sscan(u.Gid, &gid)
		}
	}
	if os.Getuid() == 0 {
		if _, err := user.LookupGroup("posterndrop"); err != nil {
			if g, err := user.LookupGroupId(fmt.Sprint(gid)); err == nil {
				owner += "\nsetgid_group = " + g.Name
			}
		}
	}
	r := strings.NewReplacer("{{DIR}}", dir, "{{UID}}", fmt.Sprint(uid), "{{GID}}", fmt.Sprint(gid),
		"{{PORT}}", fmt.Sprint(port), "{{OWNER}}", owner)
	for _, d := range []string{"conf", "mail", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0755); err != nil {
			return err
		}
	}
	if os.Getuid() == 0 {
		os.Chown(filepath.Join(dir, "mail"), uid, gid)
	}
	files := map[string]string{"main.cf": demoMainCf, "master.cf": demoMasterCf, "vmailbox": demoVmailbox}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "conf", name), []byte(r.Replace(text)), 0644); err != nil {
			return err
		}
	}
	return nil
}
