package daemon

// ExampleConfig is the documented configuration file: every key with its
// default. `tapbeat config example` prints it.
const ExampleConfig = `# tapbeat sensor configuration (DIR/tapbeat.toml).
# Every key is optional except lanzone.addresses; the values shown are the
# defaults. Flags and TAPBEAT_* environment variables override this file.

[lanzone]
# The sensor's LAN-zone addresses: the listener binds each on the port below,
# and agents learn them from the config message (no new bundle needed).
addresses = ["10.0.0.2"]
port = 8347
# Agents heartbeat at this interval; the correlator judges by it.
heartbeat_interval = "15s"

[correlation]
# Missing: no heartbeat for missing_after intervals while any MAC of the
# endpoint sent during the last interval. Silent endpoints become offline.
missing_after = 3
# No missing or no-heartbeat verdicts during this many intervals after start.
startup_grace = 3
# An agent connection that drops without a goodbye (killed or crashed agent:
# no TLS close_notify) while the endpoint's MACs keep sending makes it
# missing after this reconnect grace, not after missing_after intervals.
# Agents behind NAT or a firewall that may reset connections learn of a
# reset only at their next heartbeat: there, raise it above the interval.
reconnect_grace = "3s"
# A MAC sending this long without an enrolled owner has no heartbeat
# (default: one heartbeat interval).
# no_heartbeat_after = "15s"
# Re-alert a persisting missing endpoint at these times since its last
# heartbeat (the first step is the missing deadline).
missing_realert = ["45s", "5m", "1h"]
# Kernel drops above this fraction of frames make the capture blind.
drop_threshold = 0.01
# No frame at all for this long while endpoints heartbeat: capture blind
# (default: missing_after intervals).
# quiet_after = "45s"
# A policy violation or lateral movement for the same pair is not repeated
# within this window.
dedup_window = "5m"
# Gateways, switches, printers, HSRP/VRRP virtual MACs: they send without
# heartbeating. Full MACs or prefixes (OUIs).
infrastructure = []
# Heartbeat policies, first match decides. Minimums apply to enrolled
# endpoints (green > yellow > red > missing); the *_without_heartbeat flags
# to hosts that are not enrolled.
# [[correlation.policy]]
# name = "servers-need-green"
# sources = ["any"]
# destinations = ["10.0.10.0/24"]
# ports = [445, 3389]
# min_source_health = "green"        # none | yellow | green
# min_destination_health = "none"
# alert_source_without_heartbeat = true
# alert_destination_without_heartbeat = false

[capture]
# Mirror-port interfaces (none: the LAN zone runs alone).
interfaces = []
# TPACKET_V3 ring size per socket, and sockets per interface.
ring_mib = 64
fanout = 1

[history]
retention = "2160h"        # 90 days
min_free_mib = 1024        # below this, the oldest days are dropped
snapshot_every = "1m"      # latest state per endpoint persisted this often

[alerts]
# Syslog destinations, each with its own filter, e.g.
# "tcp://192.0.2.10:514?format=rfc5424&min_severity=warning"
syslog = []
# Local JSON-lines alert log under DIR ("" disables it).
log = "alerts.jsonl"
outbox_limit = 1000000

[api]
# Local API for the CLI (root only). Default: DIR/tapbeat.sock
# socket = "/var/lib/tapbeat/tapbeat.sock"
# Mutual-TLS admin API on the management address ("" disables it).
admin_listen = ""

[metrics]
# Prometheus /metrics and /healthz ("" disables it).
listen = ""

[console]
# The operator console and REST API (/api/v1) over HTTPS ("" disables it),
# e.g. "10.0.0.2:8443". Accounts: tapbeat user add; tokens: tapbeat token add.
web = ""
# A certificate the organisation already has; by default the sensor issues
# one from its CA for the address at every start.
# web_cert = "/etc/tapbeat/console.crt"
# web_key = "/etc/tapbeat/console.key"

[inventory]
# MACs first seen within this time of the sensor's first start are learnt
# silently; later ones raise new_station.
learning_period = "24h"
# An IP claimed by another MAC within this time of the previous MAC's last
# claim raises ip_mac_changed (arpwatch's flip flop).
flip_window = "1h"

# [fleet] makes this sensor one of several sharing enrollment, heartbeat state and
# verdicts (DEPLOYMENT.md, "A fleet of sensors"). Written by "tapbeat init --fleet-addr",
# "tapbeat config set fleet-addr" and "tapbeat init --join"; absent, no fleet runs.
# [fleet]
# name = "site-a"                 # this sensor's name in the fleet
# addr = "10.1.0.2:7422"          # cluster routes (mutual TLS) listen here
# peers = ["10.2.0.2:7422"]       # the other sensors' fleet addresses
# client_port = 7423              # the embedded node's client port, 127.0.0.1 only
# nats_url = ""                   # an operator's NATS cluster instead of an embedded node
# credentials = ""                # its .creds file
`
