#!/bin/sh
# tapbeat-agent prerm. Debian: "remove" or "upgrade"; RPM: 0 (erase) or 1
# (upgrade). Stops and disables the agent when the package goes away.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop tapbeat-agent.service || true
	fi
	if command -v systemctl >/dev/null; then
		systemctl disable tapbeat-agent.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
