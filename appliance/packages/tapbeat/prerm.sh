#!/bin/sh
# tapbeat prerm. Debian: "remove" or "upgrade"; RPM: 0 (erase) or 1 (upgrade).
# Stops the sensor when the package goes away; an upgrade restarts it in postinst.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop tapbeat.service || true
	fi
	if command -v systemctl >/dev/null; then
		systemctl disable tapbeat.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
