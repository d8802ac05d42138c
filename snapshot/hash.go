package snapshot

import (
	"crypto/sha256"
	"slices"
	"strings"

	"outpost/protocol"
)

// HashSize is how many leading bytes of the canonical hash travel with a
// snapshot push; enough to catch a delta that rebuilt the wrong snapshot.
const HashSize = 8

// Hash returns the SHA-256 of the snapshot's deterministic CBOR encoding. The
// encoding is canonical (sorted keys, shortest forms, empty collections
// omitted), so the hash survives an encode/decode round trip. d must be
// normalized.
func Hash(d *Snapshot) ([32]byte, error) {
	b, err := protocol.Marshal(d)
	if err != nil {
		return [32]byte{}, err
	}
	return HashEncoded(b), nil
}

// HashEncoded is Hash of a snapshot already encoded with protocol.Marshal,
// for callers that need the encoding too and should not make it twice.
func HashEncoded(b []byte) [32]byte { return sha256.Sum256(b) }

// Normalize sorts every collection by key, and each record's inner lists, so
// that equal engines give equal snapshots. Of records sharing a key only the
// first is kept: keys are unique on an engine, and deltas rely on it.
func Normalize(d *Snapshot) {
	d.Containers = sortByKey(d.Containers)
	d.Images = sortByKey(d.Images)
	d.Volumes = sortByKey(d.Volumes)
	d.Networks = sortByKey(d.Networks)
	d.Projects = sortByKey(d.Projects)
	for i := range d.Containers {
		c := &d.Containers[i]
		c.Labels = foldComposeLabels(c.Labels)
		slices.SortFunc(c.Ports, func(a, b Port) int {
			if a.Private != b.Private {
				return int(a.Private) - int(b.Private)
			}
			if a.Proto != b.Proto {
				return strings.Compare(a.Proto, b.Proto)
			}
			if a.IP != b.IP {
				return strings.Compare(a.IP, b.IP)
			}
			return int(a.Public) - int(b.Public)
		})
		c.Ports = slices.Compact(c.Ports)
		slices.SortFunc(c.Mounts, func(a, b Mount) int { return strings.Compare(a.Destination, b.Destination) })
		slices.Sort(c.Networks)
	}
	for i := range d.Images {
		slices.Sort(d.Images[i].Tags)
	}
	for i := range d.Networks {
		slices.Sort(d.Networks[i].Subnets)
	}
	for i := range d.Projects {
		slices.Sort(d.Projects[i].Services)
	}
	normalizeKube(d)
}

// normalizeKube sorts the Kubernetes collections by UID and the lists in
// them whose order carries no meaning. A pod's containers and an ingress's
// rules keep the order of their spec.
func normalizeKube(d *Snapshot) {
	d.Nodes = sortByKey(d.Nodes)
	d.Namespaces = sortByKey(d.Namespaces)
	d.Workloads = sortByKey(d.Workloads)
	d.Pods = sortByKey(d.Pods)
	d.Services = sortByKey(d.Services)
	d.Ingresses = sortByKey(d.Ingresses)
	d.Claims = sortByKey(d.Claims)
	d.ConfigMaps = sortByKey(d.ConfigMaps)
	d.Secrets = sortByKey(d.Secrets)
	d.Warnings = sortByKey(d.Warnings)
	for i := range d.Nodes {
		slices.Sort(d.Nodes[i].Roles)
	}
	for i := range d.Workloads {
		slices.Sort(d.Workloads[i].Images)
		d.Workloads[i].Images = slices.Compact(d.Workloads[i].Images)
	}
	for i := range d.Ingresses {
		slices.Sort(d.Ingresses[i].TLS)
	}
	for i := range d.Claims {
		slices.Sort(d.Claims[i].AccessModes)
	}
	for _, ks := range [][]KeySet{d.ConfigMaps, d.Secrets} {
		for i := range ks {
			slices.Sort(ks[i].Keys)
		}
	}
}

func sortByKey[T Record](s []T) []T {
	slices.SortStableFunc(s, func(a, b T) int { return strings.Compare(a.Key(), b.Key()) })
	return slices.CompactFunc(s, func(a, b T) bool { return a.Key() == b.Key() })
}

// composeBookkeeping are labels Docker Compose sets for its own use. They are
// left out of snapshots: config-hash is a random-looking digest per service
// that no operator reads (and that alone was a quarter of a compressed
// snapshot), image repeats ImageID, and the project's files and working dir
// are carried once by its Project record instead of once per container.
var composeBookkeeping = []string{
	"com.docker.compose.config-hash",
	"com.docker.compose.image",
	LabelConfigFiles,
	LabelWorkingDir,
}

func foldComposeLabels(m map[string]string) map[string]string {
	if m[LabelProject] == "" {
		return m
	}
	for _, k := range composeBookkeeping {
		delete(m, k)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
