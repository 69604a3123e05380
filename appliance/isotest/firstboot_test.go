package isotest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

var (
	consoleCode = regexp.MustCompile(`enrollment code: (\S+)`)
	consolePin  = regexp.MustCompile(`admin certificate pin: (\S+)`)
)

// TestFirstBootEnrollsWithCode boots a blank disk with tapbeat.format=1 and
// tapbeat.org: the appliance formats the disk, creates the organisation's
// CA and its certificate for the DHCP address, starts the sensor and shows
// a one-time code and its pin on the serial console. From the host, the
// code enrolls the first administrator through the forwarded admin API (a
// wrong pin is refused first, a second use of the code after), and that
// administrator enrolls an endpoint whose agent goes green.
func TestFirstBootEnrollsWithCode(t *testing.T) {
	testenv.RequireCommands(t, "qemu-system-x86_64")
	iso, tapbeat := image(t)
	bootDir := filepath.Join(filepath.Dir(iso), "iso", "boot")
	work := t.TempDir()
	disk := filepath.Join(work, "blank.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 1<<30); err != nil {
		t.Fatal(err)
	}
	udp := freePorts(t, "udp", 2)
	tcp := freePorts(t, "tcp", 2)
	lanPort, adminPort := tcp[0], tcp[1]
	tx := watchTx(t, udp[0])
	v := boot(t, machine{
		kernel: filepath.Join(bootDir, "vmlinuz"), initrd: filepath.Join(bootDir, "initrd.img"),
		cmdline:  `tapbeat.format=1 tapbeat.org="Example Corp" tapbeat.mgmt=` + mgmtMAC + " tapbeat.capture=" + capMAC,
		dataDisk: disk, mgmtMAC: mgmtMAC, capMAC: capMAC,
		fwd:   map[int]int{lanPort: 8347, adminPort: 8348},
		capTo: udp[0], capFrom: udp[1],
	})
	v.waitFor("formatting the empty disk as the data disk", 90*time.Second)
	v.waitFor(`first boot: sensor directory created" src=init org="Example Corp" lan=10.0.2.15`, 120*time.Second)
	v.waitFor("admin certificate pin:", 60*time.Second)
	con := v.text()
	code, pin := consoleCode.FindStringSubmatch(con), consolePin.FindStringSubmatch(con)
	if code == nil || pin == nil {
		t.Fatalf("no code or pin on the console:\n%s", con)
	}
	if !strings.Contains(con, "--server https://10.0.2.15:8348") {
		t.Errorf("the console does not give the admin API's address")
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", adminPort)

	// A pin of another sensor is refused by the CLI before the code is sent.
	other := filepath.Join(work, "other")
	run(t, tapbeat, "init", "--dir", other, "--org", "Other", "--lan", "127.0.0.1")
	wrongPin := regexp.MustCompile(`pin:\s+(\S+)`).FindStringSubmatch(run(t, tapbeat, "enroll-code", "--dir", other))[1]
	alice := filepath.Join(work, "alice.admin.json")
	enroll := func(pin, name, out string) (string, error) {
		b, err := exec.Command(tapbeat, "enroll", "--admin", "--server", server, "--pin", pin, "--code", code[1], "--name", name, "--out", out).CombinedOutput()
		return string(b), err
	}
	poll(t, "a wrong pin refused by the CLI", 90*time.Second, func() error {
		out, err := enroll(wrongPin, "alice", alice)
		if err != nil && strings.Contains(out, "does not match") {
			return nil
		}
		return fmt.Errorf("enroll with a wrong pin: %v: %s", err, out)
	})
	if out, err := enroll(pin[1], "alice", alice); err != nil || !strings.Contains(out, "enrolled administrator alice") {
		t.Fatalf("enroll the first administrator with the console's code: %v\n%s", err, out)
	}
	if out, err := enroll(pin[1], "eve", filepath.Join(work, "eve.json")); err == nil || !strings.Contains(out, "already used") {
		t.Fatalf("a second use of the code: %v\n%s", err, out)
	}

	// The administrator enrolls an endpoint; its agent goes green.
	e := &endToEnd{tapbeat: tapbeat, work: work, adminBundle: alice, hostBundle: filepath.Join(work, "host1.bundle.json")}
	poll(t, "enroll host1 as alice", 30*time.Second, func() error {
		out, err := exec.Command(tapbeat, "enroll", "--server", server, "--bundle", alice, "--name", "host1", "--out", e.hostBundle).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	e.agent = filepath.Join(work, "tapbeat-agent")
	b := exec.Command("go", "build", "-o", e.agent, "./cmd/tapbeat-agent")
	b.Dir, b.Env = repoRoot(t), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("build tapbeat-agent: %v\n%s", err, out)
	}
	agent := exec.Command(e.agent, "run", "--bundle", e.hostBundle, "--sensor", fmt.Sprintf("127.0.0.1:%d", lanPort), "--state-dir", filepath.Join(work, "agent-state"))
	agentLog, _ := os.Create(filepath.Join(work, "agent.log"))
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	poll(t, "host1 green through the admin API", 90*time.Second, func() error { return e.greenAndConnected(adminPort, "host1") })
	v.powerButton()
	v.waitExit(90 * time.Second)
	if n := tx.count(); n != 0 {
		t.Errorf("the capture NIC transmitted %d frames:\n%s", n, tx.describe())
	}
}
