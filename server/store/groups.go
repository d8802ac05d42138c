package store

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Bucket names of tags and groups (schema 5).
var (
	bTags       = []byte("tags")
	bEnvGroups  = []byte("environment_groups")
	bEdgeGroups = []byte("edge_groups")
)

// Tag labels environments; dynamic edge groups select by tags.
type Tag struct {
	ID   uint64 `json:"id"`
	Name string `json:"name"`
}

// EnvironmentGroup is a folder of environments for the operator; an
// environment is in at most one (Environment.GroupID).
type EnvironmentGroup struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Edge group match rules of a dynamic group.
const (
	MatchAll = "all"
	MatchAny = "any"
)

// EdgeGroup is a target of edge stacks and jobs: static (a list of
// environments) or dynamic (every environment whose tags match TagIDs by
// Match).
type EdgeGroup struct {
	ID             uint64   `json:"id"`
	Name           string   `json:"name"`
	Dynamic        bool     `json:"dynamic"`
	EnvironmentIDs []uint64 `json:"environmentIds,omitempty"` // static
	TagIDs         []uint64 `json:"tagIds,omitempty"`         // dynamic
	Match          string   `json:"match,omitempty"`          // dynamic: all or any
}

// createGroups5 creates the tags and groups buckets.
func createGroups5(tx *bolt.Tx) error {
	for _, name := range []string{"tags", "environment_groups", "edge_groups"} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}

// createRecord stores v in bucket under a new ID, set through setID first.
func (s *Store) createRecord(bucket []byte, setID func(uint64), v any) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		setID(id)
		return putJSON(b, u64(id), v)
	})
}

// listRecords decodes every record of bucket, by ID.
func listRecords[T any](s *Store, bucket []byte) ([]T, error) { return scanPrefix[T](s, bucket, 0) }

// updateRecord applies fn to record id of bucket in one write transaction.
func updateRecord[T any](s *Store, bucket []byte, id uint64, fn func(*T) error) (*T, error) {
	var r T
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if err := getJSON(b, u64(id), &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		return putJSON(b, u64(id), &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateTag stores t under a new ID, which it sets.
func (s *Store) CreateTag(t *Tag) error {
	return s.createRecord(bTags, func(id uint64) { t.ID = id }, t)
}

// Tags returns every tag, by ID.
func (s *Store) Tags() ([]Tag, error) { return listRecords[Tag](s, bTags) }

// UpdateTag applies fn to tag id.
func (s *Store) UpdateTag(id uint64, fn func(*Tag) error) (*Tag, error) {
	return updateRecord(s, bTags, id, fn)
}

// DeleteTag deletes tag id and, in the same transaction, takes it off the
// environments envIDs (those that carry it) and off every edge group.
func (s *Store) DeleteTag(id uint64, envIDs []uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTags)
		if b.Get(u64(id)) == nil {
			return ErrNotFound
		}
		if err := b.Delete(u64(id)); err != nil {
			return err
		}
		if err := updateEnvs(tx, envIDs, func(e *Environment) {
			e.TagIDs = slices.DeleteFunc(e.TagIDs, func(t uint64) bool { return t == id })
		}); err != nil {
			return err
		}
		return updateAll(tx.Bucket(bEdgeGroups), func(g *EdgeGroup) bool {
			n := len(g.TagIDs)
			g.TagIDs = slices.DeleteFunc(g.TagIDs, func(t uint64) bool { return t == id })
			return len(g.TagIDs) != n
		})
	})
}

// CreateEnvironmentGroup stores g under a new ID, which it sets.
func (s *Store) CreateEnvironmentGroup(g *EnvironmentGroup) error {
	return s.createRecord(bEnvGroups, func(id uint64) { g.ID = id }, g)
}

// EnvironmentGroups returns every environment group, by ID.
func (s *Store) EnvironmentGroups() ([]EnvironmentGroup, error) {
	return listRecords[EnvironmentGroup](s, bEnvGroups)
}

// UpdateEnvironmentGroup applies fn to environment group id.
func (s *Store) UpdateEnvironmentGroup(id uint64, fn func(*EnvironmentGroup) error) (*EnvironmentGroup, error) {
	return updateRecord(s, bEnvGroups, id, fn)
}

// DeleteEnvironmentGroup deletes group id and clears the group of its
// members envIDs, in one transaction.
func (s *Store) DeleteEnvironmentGroup(id uint64, envIDs []uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvGroups)
		if b.Get(u64(id)) == nil {
			return ErrNotFound
		}
		if err := b.Delete(u64(id)); err != nil {
			return err
		}
		return updateEnvs(tx, envIDs, func(e *Environment) {
			if e.GroupID == id {
				e.GroupID = 0
			}
		})
	})
}

// CreateEdgeGroup stores g under a new ID, which it sets.
func (s *Store) CreateEdgeGroup(g *EdgeGroup) error {
	return s.createRecord(bEdgeGroups, func(id uint64) { g.ID = id }, g)
}

// EdgeGroups returns every edge group, by ID.
func (s *Store) EdgeGroups() ([]EdgeGroup, error) { return listRecords[EdgeGroup](s, bEdgeGroups) }

// UpdateEdgeGroup applies fn to edge group id.
func (s *Store) UpdateEdgeGroup(id uint64, fn func(*EdgeGroup) error) (*EdgeGroup, error) {
	return updateRecord(s, bEdgeGroups, id, fn)
}

// DeleteEdgeGroup deletes edge group id.
func (s *Store) DeleteEdgeGroup(id uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEdgeGroups)
		if b.Get(u64(id)) == nil {
			return ErrNotFound
		}
		return b.Delete(u64(id))
	})
}

// updateEnvs applies fn to each of the environments ids that still exists.
func updateEnvs(tx *bolt.Tx, ids []uint64, fn func(*Environment)) error {
	b := tx.Bucket(bEnvironments)
	for _, id := range ids {
		var e Environment
		if err := getJSON(b, u64(id), &e); err != nil {
			continue // deleted since
		}
		fn(&e)
		if err := putJSON(b, u64(id), &e); err != nil {
			return err
		}
	}
	return nil
}

// updateAll rewrites each record of b for which fn reports a change. The
// keys are collected first: a bbolt cursor is not valid across a Put.
func updateAll[T any](b *bolt.Bucket, fn func(*T) bool) error {
	var keys [][]byte
	if err := b.ForEach(func(k, _ []byte) error { keys = append(keys, slices.Clone(k)); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		var r T
		if err := getJSON(b, k, &r); err != nil {
			return err
		}
		if fn(&r) {
			if err := putJSON(b, k, &r); err != nil {
				return err
			}
		}
	}
	return nil
}
