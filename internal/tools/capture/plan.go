package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"outpost/internal/testenv"
)

// What a capture of size N holds. The plan is a pure function of N, so the
// same command makes the same engine contents (IDs and times aside).
//
// About 70% of containers belong to N/5 compose projects of 2-5 services, the
// rest are standalone; 60% run, 25% exited (codes 0, 1, 137), 15% were
// created and never started. Images: about N/10 tags (at least 3), the ones
// the containers use most, then older versions no container uses any more,
// as on a device that has been upgraded a few times.

// composeVersion is the Docker Compose release whose labels the projects carry.
const composeVersion = "2.29.7"

// service is one compose service template.
type service struct {
	name  string
	image string // preferred image
	ports []string
	data  string // where the project's data volume is mounted, "" if stateless
}

type family struct {
	name     string
	services []service
}

var families = []family{
	{"shop", []service{
		{"web", "registry.local/shop/web:1.4.2", []string{"8080/tcp"}, ""},
		{"api", "registry.local/shop/api:2.0.1", []string{"8000/tcp"}, ""},
		{"worker", "registry.local/shop/worker:2.0.1", nil, ""},
		{"db", "postgres-edge:15.6", []string{"5432/tcp"}, "/var/lib/postgresql/data"},
		{"cache", "redis-edge:7", []string{"6379/tcp"}, "/data"},
	}},
	{"telemetry", []service{
		{"collector", "telemetry/collector:0.9", []string{"4317/tcp", "8125/udp"}, ""},
		{"agent", "telemetry/agent:0.9.3", nil, ""},
		{"exporter", "telemetry/node-exporter:1.8.1", []string{"9100/tcp"}, ""},
		{"tsdb", "victoriametrics-edge:1.102.1", []string{"8428/tcp"}, "/storage"},
		{"dashboard", "grafana-edge:10.4.2", []string{"3000/tcp"}, "/var/lib/grafana"},
	}},
	{"sensors", []service{
		{"reader", "registry.local/sensors/reader:3.2.0", nil, ""},
		{"mqtt", "mosquitto-edge:2.0.18", []string{"1883/tcp"}, "/mosquitto/data"},
		{"ingest", "registry.local/sensors/ingest:3.2.0", []string{"8080/tcp"}, ""},
		{"store", "registry.local/sensors/store:1.1.4", nil, "/var/lib/store"},
		{"alerts", "registry.local/sensors/alerts:0.6.0", nil, ""},
	}},
	{"vision", []service{
		{"camera", "registry.local/vision/camera:0.14.1", []string{"8554/tcp"}, ""},
		{"inference", "registry.local/vision/inference:0.14.1", []string{"9000/tcp"}, ""},
		{"recorder", "registry.local/vision/recorder:0.14.1", nil, "/recordings"},
		{"uploader", "registry.local/vision/uploader:0.3.2", nil, ""},
	}},
	{"gateway", []service{
		{"proxy", "traefik-edge:2.11", []string{"8443/tcp"}, ""},
		{"auth", "registry.local/gateway/auth:1.0.7", []string{"9091/tcp"}, ""},
		{"certs", "registry.local/gateway/certs:1.0.7", nil, "/certs"},
		{"syslog", "syslog-edge:3.38", []string{"5514/udp"}, "/var/log/remote"},
	}},
	{"plant", []service{
		{"poller", "registry.local/plant/modbus-poller:4.0.2", nil, ""},
		{"historian", "registry.local/plant/historian:4.0.2", []string{"8086/tcp"}, "/var/lib/historian"},
		{"hmi", "registry.local/plant/hmi:4.0.2", []string{"8080/tcp"}, ""},
		{"opcua", "registry.local/plant/opcua-bridge:1.3.0", []string{"4840/tcp"}, ""},
		{"cache", "redis-edge:7", []string{"6379/tcp"}, "/data"},
	}},
}

// standalones are the kinds of single containers an operator starts by hand.
var standalones = []struct {
	name, image string
	ports       []string
}{
	{"sensor-reader", "registry.local/sensors/reader:3.2.0", nil},
	{"modbus-poller", "registry.local/plant/modbus-poller:4.0.2", nil},
	{"camera-sync", "registry.local/vision/uploader:0.3.2", nil},
	{"log-shipper", "telemetry/agent:0.9.3", nil},
	{"backup-job", "registry.local/ops/backup:1.6.0", nil},
	{"ota-updater", "registry.local/ops/ota-updater:0.8.5", nil},
	{"gps-tracker", "registry.local/fleet/gps-tracker:2.3.1", []string{"9200/udp"}},
	{"watchdog", testenv.BusyboxRef, nil},
	{"node-exporter", "telemetry/node-exporter:1.8.1", []string{"9100/tcp"}},
	{"vpn-keepalive", testenv.BusyboxRef, nil},
}

var sites = []string{"plant-1", "plant-3", "depot-north", "depot-south", "yard-7"}

// exit is how a container that is not running got there.
type exit int

const (
	exitNone   exit = -1 // running, or never started
	exitClean  exit = 0
	exitFailed exit = 1
	exitKilled exit = 137
)

type state int

const (
	running state = iota
	exited
	created
)

// port is one exposed container port, published on an ephemeral host port
// when publish is set (and the container runs).
type port struct {
	spec     string // "8080/tcp"
	publish  bool
	loopback bool // published on 127.0.0.1 only
}

type volumeMount struct {
	name, target string
	readOnly     bool
}

type bindMount struct {
	sub, target string // sub: path under the run's host directory
	readOnly    bool
}

type ctPlan struct {
	name    string
	image   string
	cmd     []string
	state   state
	exit    exit
	restart string
	health  []string // healthcheck test, nil for none
	ports   []port
	volumes []volumeMount
	binds   []bindMount
	network string // "" for the default bridge
	aliases []string
	labels  map[string]string
}

type projectPlan struct {
	name    string
	volumes []string // volume keys: "data", maybe "config"
}

type imagePlan struct {
	tags []string // first is the main one
	pad  int      // bytes of filler, so image sizes differ
}

type plan struct {
	size       int
	images     []imagePlan
	projects   []projectPlan
	containers []ctPlan
}

// newPlan lays out a capture of n containers.
func newPlan(n int) *plan {
	r := rand.New(rand.NewPCG(uint64(n), 0x6f7574706f7374)) // "outpost"
	p := &plan{size: n}

	standalone := max(1, n*3/10)
	budget := n - standalone
	used := map[string]bool{}
	for range max(1, n/5) {
		if budget < 2 {
			break
		}
		f := families[r.IntN(len(families))]
		name := uniqueName(r, f.name, used)
		k := min(2+r.IntN(4), len(f.services), budget)
		if budget-k == 1 { // never leave a single container for the next project
			k = min(k+1, len(f.services))
		}
		budget -= k
		svcs := pickOrdered(r, f.services, k)
		pp := projectPlan{name: name, volumes: []string{"data"}}
		if r.IntN(10) < 4 {
			pp.volumes = append(pp.volumes, "config")
		}
		p.projects = append(p.projects, pp)
		for i, s := range svcs {
			var dep string
			if i > 0 {
				dep = svcs[i-1].name + ":service_started:false"
			}
			p.containers = append(p.containers, composeContainer(r, pp, s, dep))
		}
	}
	for len(p.containers) < n {
		s := standalones[r.IntN(len(standalones))]
		p.containers = append(p.containers, standaloneContainer(r, uniqueName(r, s.name, used), s.image, s.ports))
	}
	p.images = chooseImages(r, p.containers, max(3, n/10))
	return p
}

func composeContainer(r *rand.Rand, pp projectPlan, s service, dependsOn string) ctPlan {
	name := pp.name + "-" + s.name + "-1"
	c := ctPlan{
		name:    name,
		image:   s.image,
		network: pp.name + "_default",
		aliases: []string{name, s.name},
		labels: map[string]string{
			"com.docker.compose.project":              pp.name,
			"com.docker.compose.service":              s.name,
			"com.docker.compose.container-number":     "1",
			"com.docker.compose.oneoff":               "False",
			"com.docker.compose.config-hash":          hash(pp.name, s.name, s.image),
			"com.docker.compose.project.config_files": "/opt/edge/" + pp.name + "/docker-compose.yml",
			"com.docker.compose.project.working_dir":  "/opt/edge/" + pp.name,
			"com.docker.compose.version":              composeVersion,
			"com.docker.compose.depends_on":           dependsOn,
			// com.docker.compose.image is set at creation, from the image's ID.
		},
	}
	setState(r, &c)
	for _, spec := range s.ports {
		c.ports = append(c.ports, port{spec: spec, publish: r.IntN(10) < 6, loopback: r.IntN(5) == 0})
	}
	switch {
	case s.data != "":
		c.volumes = append(c.volumes, volumeMount{name: pp.name + "_data", target: s.data})
	case r.IntN(2) == 0:
		c.volumes = append(c.volumes, volumeMount{name: pp.name + "_data", target: "/shared"})
	}
	if len(pp.volumes) > 1 && r.IntN(2) == 0 {
		c.volumes = append(c.volumes, volumeMount{name: pp.name + "_config", target: "/etc/" + s.name, readOnly: true})
	}
	if len(c.volumes) == 0 {
		c.volumes = append(c.volumes, volumeMount{name: pp.name + "_data", target: "/data"})
	}
	return c
}

func standaloneContainer(r *rand.Rand, name, image string, ports []string) ctPlan {
	kind := name[:strings.LastIndexByte(name, '-')]
	c := ctPlan{
		name:  name,
		image: image,
		labels: map[string]string{
			"com.example.site": sites[r.IntN(len(sites))],
			"edge.role":        kind,
		},
	}
	if r.IntN(3) == 0 {
		c.labels["com.example.owner"] = []string{"ops", "controls", "vision-team"}[r.IntN(3)]
	}
	setState(r, &c)
	for _, spec := range ports {
		c.ports = append(c.ports, port{spec: spec, publish: true})
	}
	if r.IntN(2) == 0 {
		c.binds = append(c.binds, bindMount{sub: name + "/config", target: "/etc/" + kind, readOnly: true})
	}
	if r.IntN(10) < 3 {
		c.binds = append(c.binds, bindMount{sub: name + "/data", target: "/var/lib/" + kind})
	}
	return c
}

// setState draws the run state, exit, command, restart policy and health
// check of c.
func setState(r *rand.Rand, c *ctPlan) {
	c.exit = exitNone
	c.cmd = []string{"sleep", "86400"}
	policies := []string{"unless-stopped", "unless-stopped", "always", "no", "no", "on-failure"}
	switch x := r.IntN(100); {
	case x < 60:
		c.state = running
		c.restart = policies[r.IntN(len(policies))]
		if r.IntN(5) == 0 {
			c.health = []string{"CMD", "true"}
			if r.IntN(6) == 0 { // a service whose endpoint never comes up
				c.health = []string{"CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/health || exit 1"}
			}
		}
	case x < 85:
		c.state = exited
		// A policy that would restart the container on this exit is not an
		// exited container for long: only "no", or on-failure after success.
		c.restart = "no"
		switch y := r.IntN(10); {
		case y < 5:
			c.exit = exitClean
			c.cmd = []string{"sh", "-c", "echo job finished"}
			if r.IntN(2) == 0 {
				c.restart = "on-failure"
			}
		case y < 8:
			c.exit = exitFailed
			c.cmd = []string{"sh", "-c", "echo error: dial tcp: connection refused >&2; exit 1"}
		default:
			c.exit = exitKilled // started, then killed
		}
	default:
		c.state = created
		c.restart = policies[r.IntN(len(policies))]
	}
}

// chooseImages picks n image tags: the images containers use, most used
// first, then older versions of those. Containers whose image did not make
// the cut use the busybox base image instead.
func chooseImages(r *rand.Rand, cs []ctPlan, n int) []imagePlan {
	uses := map[string]int{}
	for _, c := range cs {
		if c.image != testenv.BusyboxRef {
			uses[c.image]++
		}
	}
	refs := make([]string, 0, len(uses))
	for ref := range uses {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b string) int {
		return cmp.Or(uses[b]-uses[a], strings.Compare(a, b))
	})
	if len(refs) > n {
		refs = refs[:n]
	}
	keep := map[string]bool{}
	for _, ref := range refs {
		keep[ref] = true
	}
	for i := range cs {
		if !keep[cs[i].image] {
			cs[i].image = testenv.BusyboxRef
		}
	}
	var imgs []imagePlan
	for _, ref := range refs {
		im := imagePlan{tags: []string{ref}, pad: 256<<10 + r.IntN(12<<20)}
		if repo, _ := splitRef(ref); r.IntN(4) == 0 {
			im.tags = append(im.tags, repo+":latest")
		}
		imgs = append(imgs, im)
	}
	// Older versions left behind by upgrades.
	for i := 0; len(imgs) < n && i < len(refs)*4; i++ {
		ref := refs[i%len(refs)]
		for range i/len(refs) + 1 {
			if ref != "" {
				ref = olderVersion(ref)
			}
		}
		if ref == "" || keep[ref] {
			continue
		}
		keep[ref] = true
		imgs = append(imgs, imagePlan{tags: []string{ref}, pad: 256<<10 + r.IntN(12<<20)})
	}
	return imgs
}

// olderVersion lowers the last number of ref's tag: web:1.4.2 gives web:1.4.1;
// "" when there is none to lower.
func olderVersion(ref string) string {
	repo, tag := splitRef(ref)
	i := strings.LastIndexAny(tag, ".") + 1
	v, err := strconv.Atoi(tag[i:])
	if err != nil || v == 0 {
		return ""
	}
	return fmt.Sprintf("%s:%s%d", repo, tag[:i], v-1)
}

// splitRef splits repo:tag; refs here always have a tag and no registry port.
func splitRef(ref string) (repo, tag string) {
	repo, tag, _ = strings.Cut(ref, ":")
	return repo, tag
}

// uniqueName returns base-k for a small k not yet used.
func uniqueName(r *rand.Rand, base string, used map[string]bool) string {
	for limit := 20; ; limit *= 2 {
		for range 20 {
			name := fmt.Sprintf("%s-%d", base, 1+r.IntN(limit))
			if !used[name] {
				used[name] = true
				return name
			}
		}
	}
}

// pickOrdered returns k of s, in s's order.
func pickOrdered(r *rand.Rand, s []service, k int) []service {
	idx := r.Perm(len(s))[:k]
	slices.Sort(idx)
	out := make([]service, k)
	for i, j := range idx {
		out[i] = s[j]
	}
	return out
}

// hash stands in for compose's config hash: 64 hex digits, stable for the
// same service definition.
func hash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}
