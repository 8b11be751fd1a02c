package cleanup

// Automatic BCC recipients (postconf(5) sender_bcc_maps, recipient_bcc_maps,
// always_bcc): the envelope sender is looked up in sender_bcc_maps and each
// envelope recipient (after canonical mapping, before virtual alias
// expansion) in recipient_bcc_maps, in the address lookup order of
// canonical(5); a result is one address ("multiple results are not
// supported"). always_bcc is added once per message. Each BCC address is
// rewritten and expanded as an envelope recipient and added with
// NOTIFY=NEVER, as Postfix 2.3 and later do. They are added only to mail
// that enters from outside (handoff.FlagBCC: smtpd and pickup, not with
// receive_override_options=no_address_mappings, never to notices).

import (
	"postern/pkg/config"
	"postern/pkg/resolve"
	"postern/pkg/table"
)

// bccConfig holds the BCC parameters; the zero value adds none.
type bccConfig struct {
	sender, rcpt *table.Maps
	always       string
	delim        string
	local        func(domain string) bool
}

// openBCC opens sender_bcc_maps and recipient_bcc_maps and reads always_bcc.
func (c *Cleanup) openBCC(cfg *config.Config, open resolve.Opener, delim string, local func(string) bool) error {
	c.bcc = bccConfig{always: cfg.Get("always_bcc"), delim: delim, local: local}
	return openOptional(cfg, open, []optionalMaps{
		{"sender_bcc_maps", &c.bcc.sender}, {"recipient_bcc_maps", &c.bcc.rcpt},
	})
}

// bccLookup returns the BCC address for addr in maps (none when not
// found). A lookup problem is logged and defers the message.
func (c *Cleanup) bccLookup(id string, maps *table.Maps, title, addr string) ([]string, error) {
	vals, found, err := c.lookupAddr(maps, addr, c.bcc.delim, false, c.bcc.local)
	if err != nil {
		c.log.Warning("%s: %s map lookup problem -- message not accepted, try again later", id, title)
		return nil, errDefer
	}
	if !found || len(vals) == 0 {
		return nil, nil
	}
	if len(vals) > 1 {
		c.log.Warning("%s: %s map: multiple results for %s are not supported; using %s", id, title, addr, vals[0])
	}
	return vals[:1], nil
}
