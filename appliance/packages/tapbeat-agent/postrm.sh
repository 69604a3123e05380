#!/bin/sh
# tapbeat-agent postrm. Removal keeps /var/lib/tapbeat-agent and the bundle
# in /etc/tapbeat-agent; only Debian's purge deletes them.
set -e
case "$1" in
purge)
	rm -rf /var/lib/tapbeat-agent
	rm -f /etc/tapbeat-agent/bundle.json
	rmdir /etc/tapbeat-agent/checks.d /etc/tapbeat-agent 2>/dev/null || true
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
