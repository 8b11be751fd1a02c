package config

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Kind is the type of a parameter's value.
type Kind int

// The kinds of parameter values. Strings are used as written (after
// expansion); lists are split by SplitList.
const (
	String Kind = iota
	Bool
	Int
	Time
	Size
	List
)

var kindNames = [...]string{"string", "boolean", "integer", "time", "size", "list"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Param describes one main.cf parameter.
type Param struct {
	Name    string
	Kind    Kind
	Default string // as postconf -d shows it, unexpanded; see also Config.DefaultValue
	// Unit is the time unit of a bare number for Time parameters: 's',
	// 'm', 'h' or 'd'.
	Unit byte
	Doc  string
	// Supported is true when Postern implements the parameter; other
	// registered names are accepted with a warning and ignored.
	Supported bool
	// PosternOnly is true for parameters Postfix does not have.
	PosternOnly bool
	// NoExpand marks values expanded by their user at run time with
	// per-message attributes ($recipient, $home, $client_address, ...),
	// as Postfix's "raw" parameters; Get returns them as written.
	NoExpand bool
	// Computed is true when the default is worked out at run time (host
	// name, executable location, configuration directory).
	Computed bool
}

// supported lists every parameter Postern implements. Keep it one list:
// when a feature lands, add its parameters here.
var supported = []string{
	"queue_directory", "data_directory", "daemon_directory", "command_directory",
	"config_directory", "mail_owner", "setgid_group", "mail_name", "mail_version",
	"myhostname", "mydomain", "myorigin", "mydestination",
	"inet_interfaces", "inet_protocols", "mynetworks", "mynetworks_style", "relay_domains",
	"smtpd_banner", "smtpd_relay_restrictions", "smtpd_recipient_restrictions",
	"message_size_limit", "header_size_limit", "smtpd_recipient_limit", "smtpd_timeout",
	"smtputf8_enable",
	"syslog_name", "syslog_facility", "maillog_file", "maillog_file_prefixes",
	"default_process_limit", "max_idle", "max_use", "service_throttle_time",
	"ipc_timeout", "daemon_timeout", "compatibility_level", "import_environment",
	"virtual_mailbox_domains", "virtual_mailbox_base", "virtual_mailbox_maps",
	"virtual_uid_maps", "virtual_gid_maps", "virtual_minimum_uid", "virtual_mailbox_limit",
	"virtual_transport", "recipient_delimiter",
	"minimal_backoff_time", "maximal_backoff_time", "queue_run_delay",
	"maximal_queue_lifetime", "bounce_queue_lifetime",
	"dns_resolver_address",
	"authorized_submit_users", "authorized_mailq_users", "authorized_flush_users",
	"local_login_sender_maps", "alternate_config_directories", "multi_instance_directories",
	"alias_database", "default_database_type", "trigger_timeout",
	"cleanup_service_name", "queue_service_name", "pickup_service_name",
	"relayhost", "sender_dependent_relayhost_maps", "fallback_relay", "smtp_fallback_relay",
	"smtp_bind_address", "smtp_bind_address6", "smtp_helo_name", "smtp_tcp_port",
	"smtp_host_lookup", "smtp_mx_address_limit", "smtp_mx_session_limit", "smtp_randomize_addresses",
	"smtp_always_send_ehlo", "smtp_never_send_ehlo", "smtp_skip_5xx_greeting",
	"smtp_connect_timeout", "smtp_helo_timeout", "smtp_starttls_timeout", "smtp_mail_timeout",
	"smtp_rcpt_timeout", "smtp_data_init_timeout", "smtp_data_xfer_timeout", "smtp_data_done_timeout",
	"smtp_rset_timeout", "smtp_quit_timeout",
	"smtp_connection_cache_time_limit", "smtp_connection_reuse_time_limit", "smtp_connection_reuse_count_limit",
	"smtp_tls_security_level", "smtp_use_tls", "smtp_enforce_tls", "smtp_tls_wrappermode",
	"smtp_tls_CAfile", "smtp_tls_CApath", "smtp_tls_cert_file", "smtp_tls_key_file",
	"smtp_tls_protocols", "smtp_tls_mandatory_protocols", "smtp_tls_servername",
	"smtp_tls_verify_cert_match", "smtp_tls_secure_cert_match",
	"smtp_sasl_auth_enable", "smtp_sasl_password_maps", "smtp_sasl_security_options",
	"smtp_sasl_tls_security_options", "smtp_sasl_mechanism_filter", "smtp_sender_dependent_authentication",
	"lmtp_tcp_port", "lmtp_lhlo_name", "lmtp_connect_timeout", "lmtp_lhlo_timeout", "lmtp_mail_timeout",
	"lmtp_rcpt_timeout", "lmtp_data_init_timeout", "lmtp_data_xfer_timeout", "lmtp_data_done_timeout",
	"lmtp_rset_timeout", "lmtp_quit_timeout", "lmtp_connection_cache_time_limit", "lmtp_tls_security_level",
	"lmtp_sasl_auth_enable", "lmtp_sasl_password_maps", "lmtp_sasl_security_options",
	"lmtp_sasl_tls_security_options", "lmtp_sasl_mechanism_filter",
	"local_transport", "relay_transport", "default_transport",
	"always_add_missing_headers", "smtpd_reject_unlisted_recipient", "smtpd_peername_lookup",
	"qmgr_message_active_limit", "body_checks", "header_from_format",
	"default_destination_concurrency_limit", "default_destination_recipient_limit",
	"lmtp_destination_concurrency_limit", "lmtp_destination_recipient_limit",
	"local_destination_concurrency_limit", "local_destination_recipient_limit",
	"relay_destination_concurrency_limit", "relay_destination_recipient_limit",
	"smtp_destination_concurrency_limit", "smtp_destination_recipient_limit",
	"virtual_destination_concurrency_limit", "virtual_destination_recipient_limit",
	"alias_maps", "local_recipient_maps", "forward_path", "forward_expansion_filter",
	"home_mailbox", "mail_spool_directory", "mailbox_command", "command_expansion_filter",
	"mailbox_delivery_lock", "mailbox_size_limit", "deliver_lock_attempts", "deliver_lock_delay",
	"stale_lock_time", "strict_mailbox_ownership", "allow_mail_to_commands", "allow_mail_to_files",
	"command_time_limit", "command_execution_directory", "local_command_shell", "default_privs",
	"export_environment", "prepend_delivered_header", "owner_request_special",
	"transport_maps",
	"delay_warning_time", "notify_classes", "bounce_notice_recipient", "2bounce_notice_recipient",
	"delay_notice_recipient", "double_bounce_sender",
	"virtual_alias_maps", "virtual_alias_recursion_limit", "virtual_alias_expansion_limit",
	"propagate_unmatched_extensions",
	"canonical_maps", "sender_canonical_maps", "recipient_canonical_maps", "canonical_classes",
	"sender_canonical_classes", "recipient_canonical_classes", "masquerade_domains",
	"masquerade_exceptions", "masquerade_classes", "append_dot_mydomain", "append_at_myorigin",
	"header_checks", "body_checks_size_limit", "message_drop_headers",
	"mime_header_checks", "nested_header_checks", "remote_header_rewrite_domain",
	"content_filter", "receive_override_options", "sender_bcc_maps", "recipient_bcc_maps",
	"always_bcc", "enable_original_recipient", "default_filter_nexthop",
	"mailbox_transport", "mailbox_transport_maps", "fallback_transport", "fallback_transport_maps",
	"luser_relay", "mailbox_command_maps",
	"initial_destination_concurrency", "default_destination_concurrency_positive_feedback",
	"default_destination_concurrency_negative_feedback", "default_destination_concurrency_failed_cohort_limit",
	"default_destination_rate_delay", "destination_concurrency_feedback_debug",
	"virtual_alias_domains", "bounce_size_limit", "local_header_rewrite_clients",
	"execution_directory_expansion_filter", "empty_address_relayhost_maps_lookup_key",
	"showq_service_name", "duplicate_filter_limit",
}

// posternOnly lists the parameters Postfix does not have.
var posternOnly = []string{
	"dns_resolver_address",
}

// noExpand lists the parameters expanded at use time with per-message
// attributes.
var noExpand = []string{
	"forward_path", "mailbox_command", "luser_relay", "default_rbl_reply",
	"smtpd_reject_footer", "header_from_format",
	"command_execution_directory", "mailbox_command_maps",
	"smtpd_expansion_filter", "command_expansion_filter", "forward_expansion_filter",
}

// computed lists the parameters whose default is worked out at run time.
var computed = []string{
	"myhostname", "mydomain", "daemon_directory", "command_directory", "config_directory",
}

var registry = sync.OnceValue(func() map[string]Param {
	m := make(map[string]Param, len(paramTable))
	for _, p := range paramTable {
		if _, dup := m[p.Name]; dup {
			panic("config: parameter registered twice: " + p.Name)
		}
		if p.Kind == Time && p.Unit == 0 {
			p.Unit = 's'
		}
		m[p.Name] = p
	}
	mark := func(names []string, f func(*Param)) {
		for _, n := range names {
			p, ok := m[n]
			if !ok {
				panic("config: unregistered parameter in a flag list: " + n)
			}
			f(&p)
			m[n] = p
		}
	}
	mark(supported, func(p *Param) { p.Supported = true })
	mark(posternOnly, func(p *Param) { p.PosternOnly = true })
	mark(noExpand, func(p *Param) { p.NoExpand = true })
	mark(computed, func(p *Param) { p.Computed = true })
	return m
})

// Lookup returns the registry entry of name.
func Lookup(name string) (Param, bool) {
	p, ok := registry()[name]
	return p, ok
}

// Params returns every registered parameter, sorted by name.
func Params() []Param {
	m := registry()
	out := make([]Param, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// computedDefaults works out the run-time defaults of a configuration in
// directory dir. mydomain is derived from the effective myhostname when
// asked for (Config.DefaultValue).
func computedDefaults(dir string) map[string]string {
	m := map[string]string{
		"config_directory": dir,
		"myhostname":       hostFQDN(),
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		m["daemon_directory"] = filepath.Dir(exe)
		m["command_directory"] = filepath.Dir(exe)
	}
	return m
}

// hostFQDN is the host name, made fully qualified with ".localdomain" when
// it has no dot, as Postfix does.
func hostFQDN() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	h = strings.ToLower(h)
	if !strings.Contains(h, ".") {
		h += ".localdomain"
	}
	return h
}

// domainOf is host minus its first label, or "localdomain" when host has
// a single label, as Postfix derives mydomain from myhostname.
func domainOf(host string) string {
	if i := strings.IndexByte(host, '.'); i >= 0 && i+1 < len(host) {
		return host[i+1:]
	}
	return "localdomain"
}
