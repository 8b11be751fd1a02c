package sendmail

import (
	"errors"
	"path/filepath"
	"strings"
	"time"

	"postern/pkg/config"
	"postern/pkg/queue"
	"postern/pkg/queuectl"
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

// flush is -q: as Postfix's postqueue -f (queuectl.FlushQueue).
func (r *run) flush() error {
	qdir := r.cfg.Get("queue_directory")
	privileged := r.UID == 0 || ownedBy(filepath.Join(qdir, queue.Maildrop), r.UID)
	if err := queuectl.FlushQueue(r.cfg, r.opts.ConfigDir, r.UID, privileged); err != nil {
		var re *queuectl.ReportError
		errors.As(err, &re)
		return fatalf(re.Status, "%s", re.Text)
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
