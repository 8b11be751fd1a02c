package cleanup

import (
	"fmt"
	"strings"

	"postern/pkg/config"
	"postern/pkg/matchlist"
	"postern/pkg/resolve"
	"postern/pkg/table"
)

// openTables opens the lookup tables of the rewriting parameters, once per
// process. A parameter left empty leaves its feature nil, so a message
// pays nothing for features not configured.
func (c *Cleanup) openTables(cfg *config.Config) error {
	cache := table.NewCache(table.Options{Logger: c.log.Slog()})
	open := resolve.Opener(cache.Open)
	lopen := func(spec string) (matchlist.Lookuper, error) { return cache.Open(spec) }
	mydest, err := matchlist.Domains(cfg.List("mydestination"), lopen)
	if err != nil {
		return fmt.Errorf("mydestination: %w", err)
	}
	myorigin := strings.ToLower(cfg.Get("myorigin"))
	// local says a domain is local for the user-only query forms of
	// virtual(5) and canonical(5): $myorigin and $mydestination.
	local := func(domain string) bool {
		d := strings.ToLower(strings.TrimSuffix(domain, "."))
		if d == myorigin {
			return true
		}
		ok, _ := mydest.MatchDomain(d)
		return ok
	}
	propagate := map[string]bool{}
	for _, p := range cfg.List("propagate_unmatched_extensions") {
		propagate[strings.ToLower(p)] = true
	}
	delim := cfg.Get("recipient_delimiter")
	if specs, err := table.SplitSpecs(cfg.Get("virtual_alias_maps")); err != nil {
		return fmt.Errorf("virtual_alias_maps: %w", err)
	} else if len(specs) > 0 {
		m, err := resolve.OpenMaps(cfg, "virtual_alias_maps", open)
		if err != nil {
			return err
		}
		c.valias = &virtualAlias{
			maps:           m,
			recursionLimit: max(cfg.Int("virtual_alias_recursion_limit"), 1),
			expansionLimit: max(cfg.Int("virtual_alias_expansion_limit"), 1),
			delim:          delim,
			propagate:      propagate["virtual"],
			local:          local,
		}
	}
	if err := c.openRewrite(cfg, open, delim, propagate["canonical"], local); err != nil {
		return err
	}
	if err := c.openBCC(cfg, open, delim, local); err != nil {
		return err
	}
	return c.openChecks(cfg, open)
}

// openChecks opens header_checks and body_checks and reads
// message_drop_headers.
func (c *Cleanup) openChecks(cfg *config.Config, open resolve.Opener) error {
	if err := openOptional(cfg, open, []optionalMaps{
		{"header_checks", &c.checks.header}, {"body_checks", &c.checks.body},
		{"mime_header_checks", &c.checks.mime}, {"nested_header_checks", &c.checks.nested},
	}); err != nil {
		return err
	}
	c.checks.bodyLimit = cfg.Size("body_checks_size_limit")
	c.dropHeaders = nil
	for _, h := range cfg.List("message_drop_headers") {
		if c.dropHeaders == nil {
			c.dropHeaders = map[string]bool{}
		}
		c.dropHeaders[strings.ToLower(h)] = true
	}
	return nil
}

// openRewrite sets up canonical mapping, masquerading and
// append_dot_mydomain.
func (c *Cleanup) openRewrite(cfg *config.Config, open resolve.Opener, delim string, propagate bool, local func(string) bool) error {
	if cfg.Bool("append_dot_mydomain") {
		c.dotDomain = cfg.Get("mydomain")
	}
	c.appendAt = cfg.Bool("append_at_myorigin")
	c.remoteDomain = cfg.Get("remote_header_rewrite_domain")
	r := &addrRewrite{
		delim:         delim,
		propagate:     propagate,
		local:         local,
		canonClasses:  parseClasses(cfg.List("canonical_classes")),
		senderClasses: parseClasses(cfg.List("sender_canonical_classes")),
		rcptClasses:   parseClasses(cfg.List("recipient_canonical_classes")),
		masqClasses:   parseClasses(cfg.List("masquerade_classes")),
		masqDomains:   cfg.List("masquerade_domains"),
	}
	any := len(r.masqDomains) > 0
	for _, m := range []struct {
		param string
		maps  **table.Maps
		set   *bool
	}{
		{"canonical_maps", &r.canonical, &r.canonicalSet},
		{"sender_canonical_maps", &r.senderCanon, &r.senderCanonSet},
		{"recipient_canonical_maps", &r.rcptCanon, &r.rcptCanonSet},
	} {
		specs, err := table.SplitSpecs(cfg.Get(m.param))
		if err != nil {
			return fmt.Errorf("%s: %w", m.param, err)
		}
		if len(specs) == 0 {
			continue
		}
		if *m.maps, err = resolve.OpenMaps(cfg, m.param, open); err != nil {
			return err
		}
		*m.set, any = true, true
	}
	if except := cfg.List("masquerade_exceptions"); len(except) > 0 {
		names := map[string]bool{}
		var tables []table.Table
		for _, e := range except {
			if strings.Contains(e, ":") {
				t, err := open(e)
				if err != nil {
					return fmt.Errorf("masquerade_exceptions: %w", err)
				}
				tables = append(tables, t)
				continue
			}
			names[strings.ToLower(e)] = true
		}
		r.masqExcept = func(user string) bool {
			u := strings.ToLower(user)
			if names[u] {
				return true
			}
			for _, t := range tables {
				if _, ok, _ := t.Lookup(u); ok {
					return true
				}
			}
			return false
		}
	}
	if any {
		c.addr = r
		c.hdrRewrite = r.headerClasses()
	}
	return nil
}

// optionalMaps is a parameter naming lookup tables and where they go;
// an empty parameter leaves the maps nil (no lookup at all).
type optionalMaps struct {
	param string
	maps  **table.Maps
}

// openOptional opens the tables of each parameter that names any.
func openOptional(cfg *config.Config, open resolve.Opener, list []optionalMaps) error {
	for _, p := range list {
		specs, err := table.SplitSpecs(cfg.Get(p.param))
		if err != nil {
			return fmt.Errorf("%s: %w", p.param, err)
		}
		if len(specs) == 0 {
			continue
		}
		if *p.maps, err = resolve.OpenMaps(cfg, p.param, open); err != nil {
			return err
		}
	}
	return nil
}
