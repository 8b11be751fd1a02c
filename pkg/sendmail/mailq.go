package sendmail

import (
	"errors"
	"path/filepath"
	"strings"
	"time"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/queue"
	"postern/pkg/queuectl"
	"postern/pkg/sendmail/drop"
	"postern/pkg/table"
)

// mailq is -bp: root and the owner of the queue read it directly,
// everyone else asks the showq service (queuectl.Report).
func (r *run) mailq() error {
	qdir := r.cfg.Get("queue_directory")
	direct := r.UID == 0 || ownedBy(filepath.Join(qdir, queue.Maildrop), r.UID)
	if err := queuectl.Report(r.cfg, r.opts.ConfigDir, r.UID, direct, queuectl.FormatText, time.Local, r.Stdout); err != nil {
		var re *queuectl.ReportError
		errors.As(err, &re)
		return fatalf(re.Status, "%s", re.Text)
	}
	return nil
}

// flush is -q: wake qmgr to retry the deferred queue ('F') and pickup to
// scan maildrop/ ('W'), as Postfix's postqueue -f.
func (r *run) flush() error {
	qdir := r.cfg.Get("queue_directory")
	if r.UID != 0 && !ownedBy(filepath.Join(qdir, queue.Maildrop), r.UID) {
		if err := drop.CheckFlush(r.cfg, r.UID); err != nil {
			return refusalError(r.prog, err)
		}
	}
	timeout := r.cfg.Duration("trigger_timeout")
	pub := filepath.Join(qdir, queue.Public)
	if err := ipc.Trigger(filepath.Join(pub, r.cfg.Get("queue_service_name")), 'F', timeout); err != nil {
		return fatalf(ExUnavailable, "Cannot flush mail queue - mail system is down (%v)", err)
	}
	if err := ipc.Trigger(filepath.Join(pub, r.cfg.Get("pickup_service_name")), 'W', timeout); err != nil {
		return fatalf(ExUnavailable, "Cannot flush mail queue - mail system is down (%v)", err)
	}
	return nil
}

// newaliases is -bi: Postern reads alias sources as text, so there is no
// database to build; it checks that every alias_database (or -oA) source
// loads in aliases(5) syntax and prints nothing when all do. An error is
// reported as postalias does, with exit status 1.
func (r *run) newaliases() error {
	specs := config.SplitList(r.cfg.Get("alias_database"))
	if r.opts.AliasFile != "" {
		specs = []string{r.opts.AliasFile}
	}
	var errs []string
	for _, spec := range specs {
		if !strings.Contains(spec, ":") {
			spec = r.cfg.Get("default_database_type") + ":" + spec
		}
		t, err := table.Open(spec, table.Options{Aliases: true, NoWatch: true})
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		t.Close()
	}
	if len(errs) > 0 {
		return &Error{Code: 1, Msg: strings.Join(errs, "\n")}
	}
	return nil
}
