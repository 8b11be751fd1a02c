package admin

import (
	"fmt"
	"strings"
	"syscall"

	"postern/pkg/config"
	"postern/pkg/master"
)

// fileTableTypes are the lookup table types whose name is a file the
// worker reads itself.
var fileTableTypes = map[string]bool{
	"texthash": true, "hash": true, "btree": true, "lmdb": true, "cdb": true,
	"regexp": true, "pcre": true, "cidr": true,
}

// fileParams name single files workers open.
var fileParams = []string{
	"smtp_tls_CAfile", "smtp_tls_cert_file", "smtp_tls_key_file",
}

// unreadableByOwner lists the files named in main.cf (lookup tables,
// TLS files) that mail_owner cannot read. Postfix's daemons open them as
// root before they drop privileges, so Postfix setups often have them
// root-owned with mode 0600 (SASL_README's sasl_passwd); Postern's
// workers never run as root (only master does), so such a file stops the
// worker that needs it. Only meaningful when run as root.
func unreadableByOwner(cfg *config.Config, o master.Owner) []string {
	var out []string
	seen := map[string]bool{}
	check := func(param, path string) {
		if path == "" || seen[path] || !strings.HasPrefix(path, "/") {
			return
		}
		seen[path] = true
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return // a missing file is reported by the table itself
		}
		if readableBy(&st, o) {
			return
		}
		out = append(out, fmt.Sprintf("%s: %s (owner %d, mode %04o) is not readable by mail_owner %s (uid %d); Postern's workers do not run as root: chgrp %d %s; chmod g+r %s",
			param, path, st.Uid, st.Mode&07777, cfg.Get("mail_owner"), o.UID, o.GID, path, path))
	}
	for _, p := range config.Params() {
		if !p.Supported {
			continue
		}
		if strings.HasSuffix(p.Name, "_maps") || strings.HasSuffix(p.Name, "_checks") {
			for _, spec := range cfg.List(p.Name) {
				typ, name, ok := strings.Cut(spec, ":")
				if ok && fileTableTypes[typ] {
					check(p.Name, name)
				}
			}
		}
	}
	for _, name := range fileParams {
		check(name, cfg.Get(name))
	}
	return out
}

func readableBy(st *syscall.Stat_t, o master.Owner) bool {
	switch {
	case int(st.Uid) == o.UID:
		return st.Mode&0400 != 0
	case int(st.Gid) == o.GID:
		return st.Mode&0040 != 0
	}
	return st.Mode&0004 != 0
}
