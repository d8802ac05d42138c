package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Addresses of the veth pair; a /30 of the benchmarking range (RFC 2544).
const (
	serverIP = "198.18.0.1"
	deviceIP = "198.18.0.2"
)

// runParent makes the namespaces, runs the server side and the device side
// in them, and removes everything it made.
func runParent(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark makes network namespaces and nftables counters")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install -y iproute2 nftables", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("bw%d", os.Getpid())
	ns, err := makeNamespaces(tag)
	defer ns.remove()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchwire-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	var pw [12]byte
	_, _ = rand.Read(pw[:])
	password := hex.EncodeToString(pw[:])

	srv := exec.Command("ip", "netns", "exec", ns.server, self, "-role", "server", "-dir", dir, "-addr", serverIP, "-password", password)
	srv.Stderr = os.Stderr
	stop, err := srv.StdinPipe() // closing it stops the server
	if err != nil {
		return err
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		_ = stop.Close()
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- nil
				break
			}
		}
		ready <- errors.New("the server side stopped before it was ready")
		_, _ = bufio.NewReader(out).WriteTo(os.Stderr)
	}()
	select {
	case err := <-ready:
		if err != nil {
			return err
		}
	case <-time.After(60 * time.Second):
		return errors.New("the server side was not ready within a minute")
	}
	dev := exec.Command("ip", append([]string{"netns", "exec", ns.device, self, "-role", "device", "-addr", serverIP, "-password", password}, o.args()...)...)
	dev.Stdout, dev.Stderr = os.Stdout, os.Stderr
	if err := dev.Run(); err != nil {
		return fmt.Errorf("device side: %w", err)
	}
	return nil
}

// namespaces is the pair the benchmark made.
type namespaces struct{ server, device string }

// makeNamespaces makes two namespaces joined by a veth pair with offloads
// off: with segmentation offloads on, the kernel counts a large write as one
// packet before the device splits it.
func makeNamespaces(tag string) (namespaces, error) {
	ns := namespaces{server: tag + "-srv", device: tag + "-dev"}
	steps := [][]string{
		{"ip", "netns", "add", ns.server},
		{"ip", "netns", "add", ns.device},
		{"ip", "link", "add", tag + "s", "netns", ns.server, "type", "veth", "peer", "name", tag + "d", "netns", ns.device},
		{"ip", "-n", ns.server, "addr", "add", serverIP + "/30", "dev", tag + "s"},
		{"ip", "-n", ns.device, "addr", "add", deviceIP + "/30", "dev", tag + "d"},
		{"ip", "-n", ns.server, "link", "set", tag + "s", "mtu", "1500", "up"},
		{"ip", "-n", ns.device, "link", "set", tag + "d", "mtu", "1500", "up"},
		{"ip", "-n", ns.server, "link", "set", "lo", "up"},
		{"ip", "-n", ns.device, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return ns, err
		}
	}
	if _, err := exec.LookPath("ethtool"); err == nil {
		for _, s := range [][]string{
			{"ip", "netns", "exec", ns.server, "ethtool", "-K", tag + "s", "tso", "off", "gso", "off", "gro", "off"},
			{"ip", "netns", "exec", ns.device, "ethtool", "-K", tag + "d", "tso", "off", "gso", "off", "gro", "off"},
		} {
			if err := run(s...); err != nil {
				return ns, err
			}
		}
	} else {
		fmt.Fprintln(os.Stderr, "benchwire: ethtool not found (apt-get install -y ethtool): segmentation offloads stay on, so a write larger than a packet counts as one packet; small exchanges are not affected")
	}
	return ns, nil
}

// remove deletes the namespaces (and with them the veth pair).
func (ns namespaces) remove() {
	for _, n := range []string{ns.device, ns.server} {
		if n != "" {
			_ = exec.Command("ip", "netns", "del", n).Run()
		}
	}
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// meter reads nftables counters of the device namespace: every IP packet
// to and from each server port, its bytes being the IP packet's length.
type meter struct{}

// counters are one port's packets and IP bytes, both ways.
type counters struct{ packets, bytes int64 }

const nftTable = "benchwire"

// newMeter adds the counters: one per server port and direction.
func newMeter() (*meter, error) {
	rules := fmt.Sprintf(`table inet %[1]s {
	counter outpost_up {}
	counter outpost_down {}
	counter portainer_up {}
	counter portainer_down {}
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr %[2]s tcp dport %[3]d counter name "outpost_up"
		ip daddr %[2]s tcp dport %[4]d counter name "portainer_up"
	}
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr %[2]s tcp sport %[3]d counter name "outpost_down"
		ip saddr %[2]s tcp sport %[4]d counter name "portainer_down"
	}
}
`, nftTable, serverIP, outpostPort, portainerPort)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nft: %w: %s", err, bytes.TrimSpace(out))
	}
	return &meter{}, nil
}

// read returns each port's counters, both directions summed, by system
// name (outpost, portainer).
func (m *meter) read() (map[string]counters, error) {
	out, err := exec.Command("nft", "-j", "list", "counters", "table", "inet", nftTable).Output()
	if err != nil {
		return nil, fmt.Errorf("nft list counters: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets int64  `json:"packets"`
				Bytes   int64  `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft output: %w", err)
	}
	res := map[string]counters{}
	for _, e := range doc.Nftables {
		if e.Counter == nil {
			continue
		}
		sys, _, _ := strings.Cut(e.Counter.Name, "_")
		c := res[sys]
		c.packets += e.Counter.Packets
		c.bytes += e.Counter.Bytes
		res[sys] = c
	}
	return res, nil
}

// settle waits until no packet has moved on any port for quiet (delayed
// ACKs and closes finish), at most a few seconds, and returns the counters.
func (m *meter) settle(quiet time.Duration) (map[string]counters, error) {
	last, err := m.read()
	if err != nil {
		return nil, err
	}
	still := time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		c, err := m.read()
		if err != nil {
			return nil, err
		}
		if fmt.Sprint(c) != fmt.Sprint(last) {
			last, still = c, time.Now()
			continue
		}
		if time.Since(still) >= quiet {
			break
		}
	}
	return last, nil
}
