package batches

import (
	"errors"
	"fmt"
	"sort"
)

// ErrUnknownVersion is returned by Registry.Get for a version no definition has.
var ErrUnknownVersion = errors.New("batches: unknown backfill version")

// Registry holds the definitions a binary knows, by version.
type Registry struct {
	byVersion map[int64]*Definition
}

// NewRegistry returns a registry of the SQL files in dir (see LoadDir), or
// an empty one when dir is "".
func NewRegistry(dir string) (*Registry, error) {
	r := &Registry{byVersion: map[int64]*Definition{}}
	if dir == "" {
		return r, nil
	}
	defs, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, d := range defs {
		if err := r.add(d); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds Go backfills. Two definitions with one version are an error.
func (r *Registry) Register(backfills ...GoBackfill) error {
	for _, g := range backfills {
		def := definitionOf(g)
		if def.Version < 1 {
			return fmt.Errorf("batches: Go backfill %q: version must be positive, got %d", def.Name, def.Version)
		}
		if !ValidName(def.Name) {
			return fmt.Errorf("batches: Go backfill %q: name must be lower-case letters, digits and underscores", def.Name)
		}
		if def.Mode != ModeAuto && def.Mode != ModeManual {
			return fmt.Errorf("batches: Go backfill %s: mode must be %q or %q, got %q", def.Label(), ModeAuto, ModeManual, def.Mode)
		}
		if err := def.Options.validate(); err != nil {
			return fmt.Errorf("batches: Go backfill %s: %w", def.Label(), err)
		}
		if err := r.add(def); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) add(d *Definition) error {
	if other, ok := r.byVersion[d.Version]; ok {
		return &FileError{Path: d.Source, Err: fmt.Errorf("version %d is also used by %s (%s); every backfill needs its own version", d.Version, other.Label(), other.Source)}
	}
	r.byVersion[d.Version] = d
	return nil
}

// Get returns the definition of version, or ErrUnknownVersion.
func (r *Registry) Get(version int64) (*Definition, error) {
	if d, ok := r.byVersion[version]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownVersion, version)
}

// All returns every definition in version order.
func (r *Registry) All() []*Definition {
	defs := make([]*Definition, 0, len(r.byVersion))
	for _, d := range r.byVersion {
		defs = append(defs, d)
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Version < defs[j].Version })
	return defs
}

// ValidName reports whether name may name a backfill: lower-case letters,
// digits and underscores, starting with a letter or digit (the rule for the
// <version>_<name>.sql files).
func ValidName(name string) bool {
	return fileNamePattern.MatchString("1_" + name + ".sql")
}
