#!/bin/sh
# tapbeat-agent postinst. Debian calls it with "configure" (and the version
# it upgrades from, if any), RPM with 1 (install) or 2 (upgrade).
# Creates the state directory, enables the service on first install and
# starts it: without a bundle it waits for one, it does not fail.
set -e
case "$1" in
configure | 1 | 2)
	install -d -m 0700 /var/lib/tapbeat-agent
	install -d -m 0755 /etc/tapbeat-agent /etc/tapbeat-agent/checks.d
	first=no
	if { [ "$1" = configure ] && [ -z "$2" ]; } || [ "$1" = 1 ]; then
		first=yes
	fi
	if [ "$first" = yes ] && command -v systemctl >/dev/null; then
		systemctl enable tapbeat-agent.service >/dev/null 2>&1 || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		if [ "$first" = yes ]; then
			systemctl start tapbeat-agent.service || true
		elif systemctl is-active --quiet tapbeat-agent.service; then
			systemctl restart tapbeat-agent.service || true
		fi
	fi
	if [ ! -e /etc/tapbeat-agent/bundle.json ]; then
		cat <<'MSG'
tapbeat-agent: waiting for this endpoint's enrollment bundle. On the sensor:
  runuser -u tapbeat -- tapbeat enroll --dir /var/lib/tapbeat --name HOST --out /tmp/HOST.bundle.json
then copy it here as /etc/tapbeat-agent/bundle.json (mode 0600): the service
starts heartbeating on its own.
MSG
	fi
	;;
esac
exit 0
