#!/bin/sh
# tapbeat postinst. Debian calls it with "configure", RPM with 1 (install)
# or 2 (upgrade). Creates the service user and the state directory; starts
# the sensor only when it is configured (`tapbeat init` has run).
set -e
case "$1" in
configure | 1 | 2)
	if ! getent passwd tapbeat >/dev/null; then
		useradd --system --user-group --home-dir /var/lib/tapbeat --no-create-home \
			--shell /usr/sbin/nologin --comment "tapbeat sensor" tapbeat
	fi
	# The state directory holds the CA key and the history: its owner only.
	install -d -m 0700 -o tapbeat -g tapbeat /var/lib/tapbeat
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	if [ -f /var/lib/tapbeat/tapbeat.toml ]; then
		if [ -d /run/systemd/system ] && systemctl is-enabled --quiet tapbeat.service; then
			systemctl restart tapbeat.service || true
		fi
	else
		cat <<'MSG'
tapbeat: the sensor is not configured yet, so it was not started. Next:
  runuser -u tapbeat -- tapbeat init --dir /var/lib/tapbeat --org "ORG" --lan LAN-ADDRESS
  set the capture interface in /etc/default/tapbeat (TAPBEAT_CAPTURE=eth1)
  systemctl enable --now tapbeat
MSG
	fi
	;;
esac
exit 0
