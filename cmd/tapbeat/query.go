package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/safetext"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// defaultStateDir is the daemon's state directory unless --dir says otherwise.
const defaultStateDir = "/var/lib/tapbeat"

// connFlags select where answers come from: the daemon's socket, the remote
// admin API, or the database itself.
func connFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dir", Value: defaultStateDir, EnvVars: []string{"TAPBEAT_DIR"}, Usage: "state `DIR` (history in DIR/history)"},
		&cli.StringFlag{Name: "api", Usage: "the daemon's API `SOCKET` (default DIR/tapbeat.sock)"},
		&cli.StringFlag{Name: "server", Usage: "remote admin API `URL` (https://HOST:PORT), with --bundle"},
		&cli.StringFlag{Name: "bundle", Usage: "administrator bundle `FILE` from `tapbeat enroll --admin`, for --server"},
		&cli.BoolFlag{Name: "fleet", Usage: "answer from every reachable sensor of the fleet, naming each row's sensor and any that did not answer"},
	}
}

func queryFlags(defaultSince string) []cli.Flag {
	return append(connFlags(),
		&cli.StringFlag{Name: "since", Value: defaultSince, Usage: "start `TIME`: RFC 3339, local \"2006-01-02 15:04\", or a duration ago (2h, 7d)"},
		&cli.StringFlag{Name: "until", Value: "now", Usage: "end `TIME`, as --since"},
		&cli.StringFlag{Name: "format", Value: "table", Usage: "output `FORMAT`: table, json or csv"},
		&cli.StringFlag{Name: "tz", Usage: "time `ZONE` for reading and showing local times (default the system's, e.g. UTC, Europe/Paris)"},
		&cli.IntFlag{Name: "limit", Value: history.DefaultLimit, Usage: "at most `N` events (the most recent)"},
	)
}

// queryCommand is "tapbeat query ...": forensic questions to the history.
func queryCommand() *cli.Command {
	return &cli.Command{
		Name:  "query",
		Usage: "forensic queries: endpoints, history, alerts, who had an IP, traffic, unmanaged devices",
		Description: "Asks the running daemon over its Unix socket when it answers, the remote admin API with\n" +
			"--server and --bundle, or else opens the history database itself (also a copied or restored one:\n" +
			"--dir COPY).",
		Subcommands: []*cli.Command{
			{
				Name:   "endpoints",
				Usage:  "current state of every endpoint (live from the daemon, else as last persisted)",
				Flags:  queryFlags("7d"),
				Action: runQuery(queryEndpoints),
			},
			{
				Name:  "history",
				Usage: "state transitions and other events of one endpoint or MAC",
				Flags: append(queryFlags("7d"),
					&cli.StringFlag{Name: "endpoint", Usage: "endpoint `NAME` or ID"},
					&cli.StringFlag{Name: "mac", Usage: "`MAC` address"},
					&cli.StringSliceFlag{Name: "type", Usage: "only events of `TYPE` (repeatable): " + strings.Join(schema.TypeNames(), ", ")},
				),
				Action: runQuery(queryHistory),
			},
			{
				Name:  "alerts",
				Usage: "alerts (severity notice or worse)",
				Flags: append(queryFlags("24h"),
					&cli.StringSliceFlag{Name: "type", Usage: "only alerts of `TYPE` (repeatable): " + strings.Join(alertTypeNames(), ", ")},
					&cli.StringFlag{Name: "endpoint", Usage: "only alerts about endpoint `NAME` or ID"},
				),
				Action: runQuery(queryAlerts),
			},
			{
				Name:  "who",
				Usage: "which MAC and endpoint had an IP at a time, its health then and who was signed in",
				Flags: append(queryFlags(""),
					&cli.StringFlag{Name: "ip", Required: true, Usage: "IPv4 or IPv6 `ADDRESS`"},
					&cli.StringFlag{Name: "at", Value: "now", Usage: "`TIME`, as --since"},
				),
				Action: runQuery(queryWho),
			},
			{
				Name:   "traffic",
				Usage:  "per-minute packets and bytes a MAC sent",
				Flags:  append(queryFlags("1h"), &cli.StringFlag{Name: "mac", Required: true, Usage: "`MAC` address"}),
				Action: runQuery(queryTraffic),
			},
			{
				Name:   "unmanaged",
				Usage:  "MACs with traffic and no heartbeat: first and last seen, IPs, DHCP host names",
				Flags:  queryFlags("7d"),
				Action: runQuery(queryUnmanaged),
			},
		},
	}
}

// queryEnv is what a query action gets: the backend, the parsed range and
// output settings.
type queryEnv struct {
	c       *cli.Context
	b       api.Backend
	r       history.Range
	loc     *time.Location
	format  string
	limit   int
	w       io.Writer
	now     time.Time
	via     string
	closeFn func()
}

func runQuery(fn func(*queryEnv) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return fmt.Errorf("unexpected argument %q: options go as --name VALUE", c.Args().First())
		}
		e := &queryEnv{c: c, w: c.App.Writer, now: time.Now(), format: c.String("format"), limit: c.Int("limit")}
		switch e.format {
		case "table":
			// Whatever endpoints and the wire supplied reaches the
			// terminal with its control characters escaped.
			e.w = safeWriter{e.w}
		case "json", "csv":
		default:
			return fmt.Errorf("--format %q: want table, json or csv", e.format)
		}
		e.loc = time.Local
		if tz := c.String("tz"); tz != "" {
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return fmt.Errorf("--tz %q: %w (use an IANA zone such as Europe/Paris, or UTC)", tz, err)
			}
			e.loc = loc
		}
		var err error
		if s := c.String("since"); s != "" {
			if e.r.Since, err = history.ParseTime(s, e.now, e.loc); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
		}
		if e.r.Until, err = history.ParseTime(c.String("until"), e.now, e.loc); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
		if !e.r.Since.IsZero() && e.r.Since.After(e.r.Until) {
			return fmt.Errorf("--since %s is after --until %s", e.r.Since.Format(time.RFC3339), e.r.Until.Format(time.RFC3339))
		}
		defer func() {
			if e.closeFn != nil {
				e.closeFn()
			}
		}()
		if c.Bool("fleet") {
			return runFleetQuery(e, fn)
		}
		return fn(e)
	}
}

// open connects to the answering side, once the arguments are checked.
func (e *queryEnv) open() error {
	if e.b != nil {
		return nil // --fleet set it
	}
	b, via, closeFn, err := openBackend(e.c)
	if err != nil {
		return err
	}
	e.b, e.via, e.closeFn = b, via, closeFn
	return nil
}

// footer writes a summary line to standard error, so that standard output
// holds only the table.
func (e *queryEnv) footer(format string, a ...any) {
	fmt.Fprintf(e.c.App.ErrWriter, format, a...)
}

// openBackend picks the answering side: --server, else the daemon's socket
// if it answers, else the database itself.
func openBackend(c *cli.Context) (api.Backend, string, func(), error) {
	if srv := c.String("server"); srv != "" {
		if c.String("bundle") == "" {
			return nil, "", nil, errors.New("--server needs --bundle FILE (an administrator bundle from `tapbeat enroll --admin`)")
		}
		b, err := pki.ReadBundle(c.String("bundle"))
		if err != nil {
			return nil, "", nil, err
		}
		cfg, err := pki.AdminClientConfig(b)
		if err != nil {
			return nil, "", nil, err
		}
		cl, err := api.NewTLSClient(srv, cfg)
		if err != nil {
			return nil, "", nil, err
		}
		return cl, "admin API " + srv, cl.Close, nil
	}
	dir := c.String("dir")
	sock := c.String("api")
	if sock == "" {
		sock = filepath.Join(dir, "tapbeat.sock")
	}
	if _, err := os.Stat(sock); err == nil {
		cl := api.NewUnixClient(sock)
		ctx, cancel := context.WithTimeout(c.Context, 3*time.Second)
		perr := cl.Ping(ctx)
		cancel()
		if perr == nil {
			return cl, "daemon at " + sock, cl.Close, nil
		}
		cl.Close()
		if c.IsSet("api") {
			return nil, "", nil, fmt.Errorf("no daemon answers on %s: %v", sock, perr)
		}
	} else if c.IsSet("api") {
		return nil, "", nil, fmt.Errorf("no daemon socket at %s: is the daemon running?", sock)
	}
	hdir := filepath.Join(dir, "history")
	if _, err := os.Stat(filepath.Join(hdir, "MANIFEST")); err != nil {
		return nil, "", nil, fmt.Errorf("no history database in %s and no daemon answering on %s: give --dir STATE_DIR (the directory holding history/)", hdir, sock)
	}
	st, err := history.Open(hdir, history.Options{Logger: quietLogger()})
	if err != nil {
		if errors.Is(err, history.ErrLocked) {
			return nil, "", nil, fmt.Errorf("the history database %s is locked by another process and no daemon answers on %s: "+
				"if the daemon is starting, retry in a few seconds; if it listens elsewhere, give --api SOCKET; to read a copy, give --dir COPY", hdir, sock)
		}
		return nil, "", nil, err
	}
	return api.Local{Store: st}, "database " + hdir, func() { st.Close() }, nil
}

func queryEndpoints(e *queryEnv) error {
	if err := e.open(); err != nil {
		return err
	}
	l, err := e.b.Endpoints(e.c.Context)
	if err != nil {
		return err
	}
	switch e.format {
	case "json":
		return queryJSON(e.w, l)
	case "csv":
		rows := [][]string{{"name", "endpoint_id", "org", "status", "health", "status_since", "last_heartbeat", "connected", "macs", "ips", "users", "source"}}
		for _, s := range l.Endpoints {
			macs, ips := ifaceLists(s.Interfaces)
			rows = append(rows, []string{s.Name, s.ID, s.Org, string(s.Status), healthName(s.Health), rfc(s.StatusSince), rfc(s.LastHeartbeat),
				strconv.FormatBool(s.Connected), strings.Join(macs, " "), strings.Join(ips, " "), strings.Join(s.Users, " "), l.Source})
		}
		return writeCSV(e.w, rows)
	}
	t := newTable(e.w, col{"NAME", 16}, col{"STATUS", 12}, col{"HEALTH", 6}, col{"SINCE", 16}, col{"LAST HEARTBEAT", 16}, col{"CONN", 4}, col{"USERS", 0})
	for _, s := range l.Endpoints {
		conn := "no"
		if s.Connected {
			conn = "yes"
		}
		t.row(s.Name, string(s.Status), healthName(s.Health), e.short(s.StatusSince), e.short(s.LastHeartbeat), conn, strings.Join(s.Users, ","))
	}
	t.flush()
	e.footer("%d endpoints, %s state (%s); times in %s\n", len(l.Endpoints), l.Source, e.via, e.zone())
	return nil
}

func healthName(h schema.Health) string {
	if h.Valid() {
		return h.String()
	}
	return "-"
}

func ifaceLists(itfs []schema.Interface) (macs, ips []string) {
	for _, i := range itfs {
		macs = append(macs, i.MAC.String())
		for _, a := range i.IPs {
			ips = append(ips, a.String())
		}
	}
	return macs, ips
}

// eventTypes returns the --type values, checked against the table of event
// types.
func eventTypes(c *cli.Context) ([]schema.EventType, error) {
	var out []schema.EventType
	for _, v := range c.StringSlice("type") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				typ, err := schema.ParseEventType(t)
				if err != nil {
					return nil, fmt.Errorf("--type: %w", err)
				}
				out = append(out, typ)
			}
		}
	}
	return out, nil
}

// join writes values as their String methods do, separated by sep.
func join[T fmt.Stringer](vs []T, sep string) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(v.String())
	}
	return b.String()
}

func queryHistory(e *queryEnv) error {
	types, err := eventTypes(e.c)
	if err != nil {
		return err
	}
	q := history.HistoryQuery{Range: e.r, Endpoint: e.c.String("endpoint"), Types: types, Limit: e.limit}
	if m := e.c.String("mac"); m != "" {
		if q.Endpoint != "" {
			return errors.New("give --endpoint or --mac, not both")
		}
		mac, err := schema.ParseMAC(m)
		if err != nil {
			return fmt.Errorf("--mac: %w", err)
		}
		q.MAC = mac
	}
	if q.Endpoint == "" && q.MAC.IsZero() {
		return errors.New("history needs --endpoint NAME|ID or --mac MAC")
	}
	if err := e.open(); err != nil {
		return err
	}
	evs, err := e.b.History(e.c.Context, q)
	if err != nil {
		return err
	}
	return e.events(evs)
}

func queryAlerts(e *queryEnv) error {
	types, err := eventTypes(e.c)
	if err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	evs, err := e.b.Alerts(e.c.Context, history.AlertQuery{Range: e.r, Types: types, Endpoint: e.c.String("endpoint"), Limit: e.limit})
	if err != nil {
		return err
	}
	return e.events(evs)
}

// events prints events: JSON in the event schema, CSV, or a table.
func (e *queryEnv) events(evs []schema.Event) error {
	switch e.format {
	case "json":
		if evs == nil {
			evs = []schema.Event{}
		}
		return queryJSON(e.w, evs)
	case "csv":
		rows := [][]string{{"seq", "time", "type", "severity", "endpoint_id", "endpoint_name", "status", "previous_status", "macs", "ips", "reason"}}
		for _, ev := range evs {
			rows = append(rows, []string{strconv.FormatUint(ev.Seq, 10), rfc(ev.Time), string(ev.Type), ev.Severity.String(), ev.EndpointID, ev.EndpointName,
				string(ev.Status), string(ev.PreviousStatus), join(ev.MACs, " "), join(ev.IPs, " "), ev.Reason})
		}
		return writeCSV(e.w, rows)
	}
	t := newTable(e.w, col{"TIME", 19}, col{"TYPE", 21}, col{"ENDPOINT", 14}, col{"STATUS", 15}, col{"REASON", 0})
	for _, ev := range evs {
		who := ev.EndpointName
		if who == "" && len(ev.MACs) > 0 {
			who = ev.MACs[0].String()
		}
		status := string(ev.Status)
		if ev.PreviousStatus != "" && ev.PreviousStatus != ev.Status {
			status = string(ev.PreviousStatus) + ">" + status
		}
		t.row(e.long(ev.Time), string(ev.Type), who, status, ev.Reason)
	}
	t.flush()
	e.footer("%d events from %s to %s (%s); times in %s\n", len(evs), e.long(e.r.Since), e.long(e.r.Until), e.via, e.zone())
	return nil
}

func queryWho(e *queryEnv) error {
	ip, err := netip.ParseAddr(e.c.String("ip"))
	if err != nil {
		return fmt.Errorf("--ip %q: want an IPv4 or IPv6 address", e.c.String("ip"))
	}
	at, err := history.ParseTime(e.c.String("at"), e.now, e.loc)
	if err != nil {
		return fmt.Errorf("--at: %w", err)
	}
	if err := e.open(); err != nil {
		return err
	}
	ans, err := e.b.Who(e.c.Context, ip, at)
	if err != nil {
		return err
	}
	var mac, bsrc, bstart, bend, host, epName, epID, status, since, users string
	if ans.MAC != nil {
		mac = ans.MAC.String()
	}
	if b := ans.Binding; b != nil {
		bsrc, bstart, bend, host = strings.Join(b.Sources, ","), rfc(b.Start), rfc(b.End), b.Hostname
	}
	if ans.Endpoint != nil {
		epName, epID = ans.Endpoint.Name, ans.Endpoint.EndpointID
	}
	if ans.Status != nil {
		status, since = string(ans.Status.Status), rfc(ans.Status.Time)
	}
	users = strings.Join(ans.Users, " ")
	switch e.format {
	case "json":
		return queryJSON(e.w, ans)
	case "csv":
		return writeCSV(e.w, [][]string{
			{"ip", "at", "confidence", "mac", "binding_start", "binding_end", "binding_sources", "hostname", "endpoint_name", "endpoint_id", "status", "status_since", "users", "unmanaged"},
			{ip.String(), rfc(at), ans.Confidence, mac, bstart, bend, bsrc, host, epName, epID, status, since, users, strconv.FormatBool(ans.Unmanaged != nil)},
		})
	}
	w := e.w
	fmt.Fprintf(w, "%-11s %s\n", "IP", ip)
	fmt.Fprintf(w, "%-11s %s\n", "At", e.long(at)+" "+e.zone())
	if ans.Binding == nil {
		fmt.Fprintf(w, "%-11s no MAC was seen with %s before that time\n", "MAC", ip)
		if n := ans.Next; n != nil {
			fmt.Fprintf(w, "%-11s %s from %s\n", "Next", n.MAC, e.long(n.Start))
		}
		return nil
	}
	b := ans.Binding
	fmt.Fprintf(w, "%-11s %s (%s)\n", "MAC", mac, describeConfidence(ans.Confidence))
	seen := fmt.Sprintf("%s to %s via %s", e.long(b.Start), e.long(b.End), bsrc)
	if b.Hostname != "" {
		seen += ", host name " + b.Hostname
	}
	fmt.Fprintf(w, "%-11s %s\n", "Seen", seen)
	if n := ans.Next; n != nil && n.MAC != b.MAC {
		fmt.Fprintf(w, "%-11s %s from %s\n", "Then", n.MAC, e.long(n.Start))
	}
	if ans.Endpoint != nil {
		fmt.Fprintf(w, "%-11s %s (id %s, org %s)\n", "Endpoint", epName, epID, ans.Endpoint.Org)
		if ans.Status != nil {
			line := fmt.Sprintf("%s since %s", status, e.long(ans.Status.Time))
			if ans.Status.Reason != "" {
				line += ": " + ans.Status.Reason
			}
			fmt.Fprintf(w, "%-11s %s\n", "Status", clip(line, 88))
		}
		if users == "" {
			users = "(none declared)"
		}
		fmt.Fprintf(w, "%-11s %s\n", "Users", users)
	} else {
		fmt.Fprintf(w, "%-11s none: no enrolled endpoint owned %s then\n", "Endpoint", mac)
	}
	if u := ans.Unmanaged; u != nil {
		fmt.Fprintf(w, "%-11s no heartbeat; seen %s to %s, %d packets", "Unmanaged", e.long(u.FirstSeen), e.long(u.LastSeen), u.Packets)
		if len(u.Hostnames) > 0 {
			fmt.Fprintf(w, ", DHCP host name %s", strings.Join(u.Hostnames, ","))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func describeConfidence(c string) string {
	switch c {
	case history.ConfidenceObserved:
		return "observed using it at that time"
	case history.ConfidenceBetween:
		return "seen with it before and after that time"
	case history.ConfidenceLastSeen:
		return "the last MAC seen with it before that time"
	case history.ConfidenceContested:
		return "last seen with it before that time; another MAC took it later"
	}
	return c
}

func queryTraffic(e *queryEnv) error {
	mac, err := schema.ParseMAC(e.c.String("mac"))
	if err != nil {
		return fmt.Errorf("--mac: %w", err)
	}
	if err := e.open(); err != nil {
		return err
	}
	rows, err := e.b.Traffic(e.c.Context, history.TrafficQuery{Range: e.r, MAC: mac})
	if err != nil {
		return err
	}
	switch e.format {
	case "json":
		return queryJSON(e.w, rows)
	case "csv":
		out := [][]string{{"mac", "minute", "packets", "bytes"}}
		for _, r := range rows {
			out = append(out, []string{r.MAC.String(), rfc(r.Minute), strconv.FormatUint(r.Packets, 10), strconv.FormatUint(r.Bytes, 10)})
		}
		return writeCSV(e.w, out)
	}
	t := newTable(e.w, col{"MINUTE", 16}, col{"PACKETS", 12}, col{"BYTES", 14})
	var p, b uint64
	for _, r := range rows {
		t.row(e.short(r.Minute), strconv.FormatUint(r.Packets, 10), strconv.FormatUint(r.Bytes, 10))
		p += r.Packets
		b += r.Bytes
	}
	t.flush()
	e.footer("%s: %d minutes, %d packets, %d bytes (%s); times in %s\n", mac, len(rows), p, b, e.via, e.zone())
	return nil
}

func queryUnmanaged(e *queryEnv) error {
	if err := e.open(); err != nil {
		return err
	}
	sts, err := e.b.Unmanaged(e.c.Context, e.r)
	if err != nil {
		return err
	}
	vendors := inventory.Load()
	switch e.format {
	case "json":
		type withVendor struct {
			history.Station
			Vendor string `json:"vendor,omitempty"`
		}
		out := make([]withVendor, len(sts))
		for i, s := range sts {
			out[i] = withVendor{Station: s, Vendor: vendors.Label(s.MAC)}
		}
		return queryJSON(e.w, out)
	case "csv":
		out := [][]string{{"mac", "first_seen", "last_seen", "packets", "bytes", "ips", "hostnames", "vendor"}}
		for _, s := range sts {
			out = append(out, []string{s.MAC.String(), rfc(s.FirstSeen), rfc(s.LastSeen), strconv.FormatUint(s.Packets, 10),
				strconv.FormatUint(s.Bytes, 10), joinAddrs(s.IPs), strings.Join(s.Hostnames, " "), vendors.Label(s.MAC)})
		}
		return writeCSV(e.w, out)
	}
	t := newTable(e.w, col{"MAC", 17}, col{"FIRST SEEN", 16}, col{"LAST SEEN", 16}, col{"PACKETS", 9}, col{"IPS", 18}, col{"VENDOR", 10}, col{"HOST NAMES", 0})
	for _, s := range sts {
		// The table keeps to 100 columns: the vendor's first word; CSV and
		// JSON carry the whole name.
		v, _, _ := strings.Cut(vendors.Label(s.MAC), " ")
		if inventory.IsLocal(s.MAC) {
			v = "(local)"
		}
		v = strings.TrimRight(v, ",.")
		if r := []rune(v); len(r) > 10 {
			v = string(r[:10])
		}
		t.row(s.MAC.String(), e.short(s.FirstSeen), e.short(s.LastSeen), strconv.FormatUint(s.Packets, 10), joinAddrs(s.IPs), v, strings.Join(s.Hostnames, ","))
	}
	t.flush()
	e.footer("%d unmanaged stations from %s to %s (%s); times in %s\n", len(sts), e.long(e.r.Since), e.long(e.r.Until), e.via, e.zone())
	return nil
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Output helpers.

func rfc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// zone names the time zone table times are shown in.
func (e *queryEnv) zone() string {
	name, off := e.now.In(e.loc).Zone()
	sign := "+"
	if off < 0 {
		sign, off = "-", -off
	}
	utc := fmt.Sprintf("UTC%s%02d:%02d", sign, off/3600, off%3600/60)
	if e.loc.String() != "Local" && e.loc.String() != name {
		name = e.loc.String() + " " + name
	}
	if name == "UTC" {
		return name
	}
	return name + " (" + utc + ")"
}

func (e *queryEnv) long(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(e.loc).Format("2006-01-02 15:04:05")
}

func (e *queryEnv) short(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(e.loc).Format("2006-01-02 15:04")
}

func queryJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// safeWriter escapes control characters, bidirectional controls and
// invalid UTF-8 in what it writes, keeping newlines and tabs. Table cells
// are escaped on their own, newlines included, before this.
type safeWriter struct{ w io.Writer }

func (s safeWriter) Write(p []byte) (int, error) {
	if !safetext.Needed(string(p)) {
		return s.w.Write(p)
	}
	if _, err := s.w.Write(safetext.Append(nil, string(p), true)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeCSV writes rows with every cell's control characters escaped (a
// cell may come from an endpoint and end up in a terminal or spreadsheet).
func writeCSV(w io.Writer, rows [][]string) error {
	for _, r := range rows {
		for i := range r {
			r[i] = safetext.String(r[i])
		}
	}
	cw := csv.NewWriter(w)
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// tableWidth is the terminal width tables fit in.
const tableWidth = 100

type col struct {
	name  string
	width int // 0: the rest of the line
}

// table prints fixed-width columns; cells too long are clipped with "…".
type table struct {
	w    io.Writer
	cols []col
	rows [][]string
}

func newTable(w io.Writer, cols ...col) *table {
	used := 0
	for _, c := range cols {
		used += c.width + 1
	}
	for i := range cols {
		if cols[i].width == 0 {
			cols[i].width = max(tableWidth-used, 8)
		}
	}
	return &table{w: w, cols: cols}
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) flush() {
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range t.cols {
			cell := ""
			if i < len(cells) {
				cell = clip(safetext.String(strings.ReplaceAll(cells[i], "\n", " ")), c.width)
			}
			b.WriteString(cell)
			if i < len(t.cols)-1 {
				b.WriteString(strings.Repeat(" ", c.width-utf8.RuneCountInString(cell)+1))
			}
		}
		fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
	}
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
	}
	line(names)
	for _, r := range t.rows {
		line(r)
	}
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// quietLogger reports only errors, on standard error: the CLI's output is
// for answers.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// alertTypeNames lists the alert types of the table of event types.
func alertTypeNames() []string {
	var out []string
	for _, t := range schema.Types() {
		if t.Alert {
			out = append(out, string(t.Type))
		}
	}
	return out
}
