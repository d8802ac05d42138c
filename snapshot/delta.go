package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"outpost/protocol"
)

// ErrBase is returned by Apply when a delta does not fit the snapshot it is
// applied to: the sender's base differs from the receiver's.
var ErrBase = errors.New("snapshot: delta does not fit its base; send a full snapshot")

// Delta turns one Docker snapshot into the next. Each collection carries
// whole records for new keys, field patches for changed ones and the keys of
// removed ones. Engine is set when any engine fact changed.
type Delta struct {
	Engine     *Engine             `cbor:"1,keyasint,omitempty" json:"engine,omitempty"`
	Containers *Changes[Container] `cbor:"2,keyasint,omitempty" json:"containers,omitempty"`
	Images     *Changes[Image]     `cbor:"3,keyasint,omitempty" json:"images,omitempty"`
	Volumes    *Changes[Volume]    `cbor:"4,keyasint,omitempty" json:"volumes,omitempty"`
	Networks   *Changes[Network]   `cbor:"5,keyasint,omitempty" json:"networks,omitempty"`
	Projects   *Changes[Project]   `cbor:"6,keyasint,omitempty" json:"projects,omitempty"`

	Cluster    *Cluster            `cbor:"7,keyasint,omitempty" json:"cluster,omitempty"`
	Nodes      *Changes[Node]      `cbor:"8,keyasint,omitempty" json:"nodes,omitempty"`
	Namespaces *Changes[Namespace] `cbor:"9,keyasint,omitempty" json:"namespaces,omitempty"`
	Workloads  *Changes[Workload]  `cbor:"10,keyasint,omitempty" json:"workloads,omitempty"`
	Pods       *Changes[Pod]       `cbor:"11,keyasint,omitempty" json:"pods,omitempty"`
	Services   *Changes[Service]   `cbor:"12,keyasint,omitempty" json:"services,omitempty"`
	Ingresses  *Changes[Ingress]   `cbor:"13,keyasint,omitempty" json:"ingresses,omitempty"`
	Claims     *Changes[Claim]     `cbor:"14,keyasint,omitempty" json:"claims,omitempty"`
	ConfigMaps *Changes[KeySet]    `cbor:"15,keyasint,omitempty" json:"configMaps,omitempty"`
	Secrets    *Changes[KeySet]    `cbor:"16,keyasint,omitempty" json:"secrets,omitempty"`
	Warnings   *Changes[Warning]   `cbor:"17,keyasint,omitempty" json:"warnings,omitempty"`
}

// Changes is the delta of one keyed collection.
type Changes[T Record] struct {
	Put   []T      `cbor:"1,keyasint,omitempty" json:"put,omitempty"`
	Patch []Patch  `cbor:"2,keyasint,omitempty" json:"patch,omitempty"`
	Del   []string `cbor:"3,keyasint,omitempty" json:"del,omitempty"`
}

// Patch changes some fields of one record, by CBOR field number.
type Patch struct {
	Key   string                         `cbor:"1,keyasint" json:"key"`
	Set   map[uint64]protocol.RawMessage `cbor:"2,keyasint,omitempty" json:"set,omitempty"`
	Unset []uint64                       `cbor:"3,keyasint,omitempty" json:"unset,omitempty"`
}

// Record is a keyed element of a snapshot collection.
type Record interface {
	Container | Image | Volume | Network | Project |
		Node | Namespace | Workload | Pod | Service | Ingress | Claim | KeySet | Warning
	Key() string
}

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool {
	return d.Engine == nil && d.Containers == nil && d.Images == nil &&
		d.Volumes == nil && d.Networks == nil && d.Projects == nil &&
		d.Cluster == nil && d.Nodes == nil && d.Namespaces == nil && d.Workloads == nil &&
		d.Pods == nil && d.Services == nil && d.Ingresses == nil && d.Claims == nil &&
		d.ConfigMaps == nil && d.Secrets == nil && d.Warnings == nil
}

// Compute returns the delta that turns base into next. Both must be
// normalized (sorted by key).
func Compute(base, next *Snapshot) (*Delta, error) {
	d := &Delta{}
	if base.Engine != next.Engine {
		e := next.Engine
		d.Engine = &e
	}
	if base.Cluster != next.Cluster {
		c := next.Cluster
		d.Cluster = &c
	}
	err := errors.Join(
		diffInto(&d.Containers, base.Containers, next.Containers, "containers"),
		diffInto(&d.Images, base.Images, next.Images, "images"),
		diffInto(&d.Volumes, base.Volumes, next.Volumes, "volumes"),
		diffInto(&d.Networks, base.Networks, next.Networks, "networks"),
		diffInto(&d.Projects, base.Projects, next.Projects, "projects"),
		diffInto(&d.Nodes, base.Nodes, next.Nodes, "nodes"),
		diffInto(&d.Namespaces, base.Namespaces, next.Namespaces, "namespaces"),
		diffInto(&d.Workloads, base.Workloads, next.Workloads, "workloads"),
		diffInto(&d.Pods, base.Pods, next.Pods, "pods"),
		diffInto(&d.Services, base.Services, next.Services, "services"),
		diffInto(&d.Ingresses, base.Ingresses, next.Ingresses, "ingresses"),
		diffInto(&d.Claims, base.Claims, next.Claims, "claims"),
		diffInto(&d.ConfigMaps, base.ConfigMaps, next.ConfigMaps, "config maps"),
		diffInto(&d.Secrets, base.Secrets, next.Secrets, "secrets"),
		diffInto(&d.Warnings, base.Warnings, next.Warnings, "warnings"),
	)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Apply returns base with the delta applied. base is not modified.
func Apply(base *Snapshot, d *Delta) (*Snapshot, error) {
	out := &Snapshot{Engine: base.Engine}
	if d.Engine != nil {
		out.Engine = *d.Engine
	}
	out.Cluster = base.Cluster
	if d.Cluster != nil {
		out.Cluster = *d.Cluster
	}
	err := errors.Join(
		applyInto(&out.Containers, base.Containers, d.Containers, "containers"),
		applyInto(&out.Images, base.Images, d.Images, "images"),
		applyInto(&out.Volumes, base.Volumes, d.Volumes, "volumes"),
		applyInto(&out.Networks, base.Networks, d.Networks, "networks"),
		applyInto(&out.Projects, base.Projects, d.Projects, "projects"),
		applyInto(&out.Nodes, base.Nodes, d.Nodes, "nodes"),
		applyInto(&out.Namespaces, base.Namespaces, d.Namespaces, "namespaces"),
		applyInto(&out.Workloads, base.Workloads, d.Workloads, "workloads"),
		applyInto(&out.Pods, base.Pods, d.Pods, "pods"),
		applyInto(&out.Services, base.Services, d.Services, "services"),
		applyInto(&out.Ingresses, base.Ingresses, d.Ingresses, "ingresses"),
		applyInto(&out.Claims, base.Claims, d.Claims, "claims"),
		applyInto(&out.ConfigMaps, base.ConfigMaps, d.ConfigMaps, "config maps"),
		applyInto(&out.Secrets, base.Secrets, d.Secrets, "secrets"),
		applyInto(&out.Warnings, base.Warnings, d.Warnings, "warnings"),
	)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// diffInto sets *c to the changes from base to next of the collection
// named what.
func diffInto[T Record](c **Changes[T], base, next []T, what string) error {
	var err error
	if *c, err = diff(base, next); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// applyInto sets *out to base with the changes c of the collection named
// what applied.
func applyInto[T Record](out *[]T, base []T, c *Changes[T], what string) error {
	var err error
	if *out, err = apply(base, c); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// diff compares two collections sorted by key.
func diff[T Record](base, next []T) (*Changes[T], error) {
	c := &Changes[T]{}
	i, j := 0, 0
	for i < len(base) || j < len(next) {
		switch {
		case j == len(next) || (i < len(base) && base[i].Key() < next[j].Key()):
			c.Del = append(c.Del, base[i].Key())
			i++
		case i == len(base) || next[j].Key() < base[i].Key():
			c.Put = append(c.Put, next[j])
			j++
		default:
			p, err := patch(base[i], next[j])
			if err != nil {
				return nil, err
			}
			if p != nil {
				c.Patch = append(c.Patch, *p)
			}
			i++
			j++
		}
	}
	if c.Put == nil && c.Patch == nil && c.Del == nil {
		return nil, nil
	}
	return c, nil
}

// patch returns the field changes from a to b (same key), or nil if none.
func patch[T Record](a, b T) (*Patch, error) {
	ea, err := protocol.Marshal(a)
	if err != nil {
		return nil, err
	}
	eb, err := protocol.Marshal(b)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(ea, eb) {
		return nil, nil
	}
	var fa, fb map[uint64]protocol.RawMessage
	if err := protocol.Unmarshal(ea, &fa); err != nil {
		return nil, err
	}
	if err := protocol.Unmarshal(eb, &fb); err != nil {
		return nil, err
	}
	p := &Patch{Key: b.Key()}
	for k, vb := range fb {
		if va, ok := fa[k]; !ok || !bytes.Equal(va, vb) {
			if p.Set == nil {
				p.Set = map[uint64]protocol.RawMessage{}
			}
			p.Set[k] = vb
		}
	}
	for k := range fa {
		if _, ok := fb[k]; !ok {
			p.Unset = append(p.Unset, k)
		}
	}
	slices.Sort(p.Unset)
	return p, nil
}

// apply applies one collection's changes; the result is sorted by key.
func apply[T Record](base []T, c *Changes[T]) ([]T, error) {
	if c == nil {
		return base, nil
	}
	byKey := make(map[string]T, len(base)+len(c.Put))
	for _, r := range base {
		byKey[r.Key()] = r
	}
	for _, k := range c.Del {
		if _, ok := byKey[k]; !ok {
			return nil, fmt.Errorf("%w: delete of missing %q", ErrBase, k)
		}
		delete(byKey, k)
	}
	for _, p := range c.Patch {
		r, ok := byKey[p.Key]
		if !ok {
			return nil, fmt.Errorf("%w: patch of missing %q", ErrBase, p.Key)
		}
		nr, err := applyPatch(r, p)
		if err != nil {
			return nil, fmt.Errorf("patch %q: %w", p.Key, err)
		}
		byKey[p.Key] = nr
	}
	for _, r := range c.Put {
		byKey[r.Key()] = r
	}
	out := make([]T, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(a.Key(), b.Key()) })
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func applyPatch[T Record](r T, p Patch) (T, error) {
	var zero T
	enc, err := protocol.Marshal(r)
	if err != nil {
		return zero, err
	}
	var fields map[uint64]protocol.RawMessage
	if err := protocol.Unmarshal(enc, &fields); err != nil {
		return zero, err
	}
	for _, k := range p.Unset {
		delete(fields, k)
	}
	for k, v := range p.Set {
		fields[k] = v
	}
	if enc, err = protocol.Marshal(fields); err != nil {
		return zero, err
	}
	var out T
	if err := protocol.Unmarshal(enc, &out); err != nil {
		return zero, err
	}
	if out.Key() != p.Key {
		return zero, fmt.Errorf("%w: patch changes the key", ErrBase)
	}
	return out, nil
}

// Replay rebuilds a snapshot from a whole one (as CBOR) and the deltas
// (as CBOR) pushed after it, in order.
func Replay(full []byte, deltas [][]byte) (*Snapshot, error) {
	d := &Snapshot{}
	if err := protocol.Unmarshal(full, d); err != nil {
		return nil, fmt.Errorf("replay: decode snapshot: %w", err)
	}
	for i, raw := range deltas {
		var delta Delta
		if err := protocol.Unmarshal(raw, &delta); err != nil {
			return nil, fmt.Errorf("replay: decode delta %d: %w", i+1, err)
		}
		next, err := Apply(d, &delta)
		if err != nil {
			return nil, fmt.Errorf("replay: delta %d: %w", i+1, err)
		}
		d = next
	}
	return d, nil
}
