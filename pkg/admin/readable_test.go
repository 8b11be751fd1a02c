package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/master"
)

// TestUnreadableByOwner: a root-only sasl_passwd (Postfix's SASL_README
// setup) is reported with the fix; files mail_owner can read are not.
func TestUnreadableByOwner(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "sasl_passwd")
	shared := filepath.Join(dir, "transport")
	for _, f := range []string{secret, shared} {
		if err := os.WriteFile(f, []byte("x y\n"), 0600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(shared, 0644)
	cf := "smtp_sasl_password_maps = hash:" + secret + "\ntransport_maps = texthash:" + shared + "\nsmtp_tls_CAfile = " + secret + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// An owner that is not the files' owner (uid of the test + 1).
	o := master.Owner{UID: os.Getuid() + 1, GID: os.Getgid() + 1}
	got := unreadableByOwner(cfg, o)
	if len(got) != 1 || !strings.Contains(got[0], "smtp_sasl_password_maps: "+secret) || !strings.Contains(got[0], "chmod g+r") {
		t.Errorf("got %q, want one warning about %s", got, secret)
	}
	// The files' own owner reads both.
	if got := unreadableByOwner(cfg, master.Owner{UID: os.Getuid(), GID: os.Getgid()}); len(got) != 0 {
		t.Errorf("owner: %q", got)
	}
}
