# Postern — build, test, run, install.
GO      ?= go
PREFIX  ?= /usr
DESTDIR ?=
RUN     ?= $(CURDIR)/run

# Installed layout (as Debian's Postfix): the daemons in a private directory,
# the user commands linked from sbin/bin.
LIBEXEC  = $(PREFIX)/libexec/postern
SBIN     = $(PREFIX)/sbin
CONFDIR ?= /etc/postern

.PHONY: all test run stop install clean

# sendmail and postdrop run once per submitted message: they are linked
# statically (no cgo) because the dynamic loader alone costs about 0.75 ms
# per call; their user lookups then read /etc/passwd and /etc/group
# directly instead of NSS. The daemons keep the libc resolver and NSS.
STATIC = sendmail postdrop

all:
	$(GO) build -o bin/ $(filter-out $(addprefix ./cmd/,$(STATIC)),$(wildcard ./cmd/*))
	CGO_ENABLED=0 $(GO) build -o bin/ $(addprefix ./cmd/,$(STATIC))

test: all
	$(GO) test ./...

# Build, then start an unprivileged instance on 127.0.0.1:2525 with its
# queue, log and Maildirs under $(RUN).
run: all
	./bin/postern demo $(RUN)

stop:
	./bin/postern -c $(RUN)/conf stop

install: all
	install -d $(DESTDIR)$(LIBEXEC) $(DESTDIR)$(SBIN) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(CONFDIR)
	install -m 0755 bin/* $(DESTDIR)$(LIBEXEC)/
	ln -sf $(LIBEXEC)/postern $(DESTDIR)$(SBIN)/postern
	ln -sf $(LIBEXEC)/sendmail $(DESTDIR)$(SBIN)/sendmail
	ln -sf $(LIBEXEC)/sendmail $(DESTDIR)$(PREFIX)/bin/mailq
	ln -sf $(LIBEXEC)/sendmail $(DESTDIR)$(PREFIX)/bin/newaliases
	for f in main.cf master.cf aliases; do \
		[ -e $(DESTDIR)$(CONFDIR)/$$f ] || install -m 0644 conf/$$f $(DESTDIR)$(CONFDIR)/$$f; \
	done
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		getent group posterndrop >/dev/null || groupadd --system posterndrop; \
		getent passwd postern >/dev/null || useradd --system --no-create-home \
			--home-dir /var/spool/postern --shell /usr/sbin/nologin postern; \
		chgrp posterndrop $(LIBEXEC)/postdrop && chmod 2755 $(LIBEXEC)/postdrop; \
		$(SBIN)/postern -c $(CONFDIR) check; \
	fi

clean:
	rm -rf bin
