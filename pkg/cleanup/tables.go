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
	return nil
}
