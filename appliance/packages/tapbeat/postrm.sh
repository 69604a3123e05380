#!/bin/sh
# tapbeat postrm. Removal keeps /var/lib/tapbeat (the CA, the trust store and
# the history: reinstalling picks up where the sensor stopped); only
# Debian's purge deletes it. The tapbeat user stays, as Debian policy asks,
# so files it owns elsewhere never pass to a reused user id.
set -e
case "$1" in
purge)
	rm -rf /var/lib/tapbeat
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
