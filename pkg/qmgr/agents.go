package qmgr

import "postern/pkg/mastercf"

// relayAgents returns the master.cf services whose program is the smtp or
// lmtp client: a success there is "relayed" (RFC 3464 §2.3.3), as Postfix's
// smtp(8) reports it (its final-delivery flag, which makes LMTP say
// "delivered", is not supported). Without a readable master.cf the stock
// names stand in.
func relayAgents(configDir string, defaultMaxproc int) map[string]bool {
	m := map[string]bool{}
	services, _, err := mastercf.Load(configDir, defaultMaxproc)
	if err != nil {
		for _, name := range []string{"smtp", "relay", "lmtp"} {
			m[name] = true
		}
		return m
	}
	for _, s := range services {
		if s.Type == mastercf.TypeUnix && (s.Command == "smtp" || s.Command == "lmtp") {
			m[s.Name] = true
		}
	}
	return m
}
