package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WedgeFile is the wedge record in a wedge's run directory: which namespaces
// its TUNs are in, so that whoever finds the directory after the wedge's
// process died (the next wedge or lab of that name, `lab down`) can make sure
// they are gone. Its presence marks the run directory as a wedge's.
const WedgeFile = "wedge.json"

// WedgeRecord is what a wedge's run directory says of its two sides.
type WedgeRecord struct {
	Sides [2]SideRecord `json:"sides"`
}

// SideRecord is one side of a WedgeRecord.
type SideRecord struct {
	Target  string `json:"target"`
	Path    string `json:"path"`     // the namespace file the wedge opened
	NetnsID uint64 `json:"netns_id"` // its inode then
	Link    string `json:"link"`     // the TUN's name in it
	// Before is the namespace's main routing table before the wedge (both
	// families, one route a line, sorted), to check that it is so again.
	Before []string `json:"routes_before"`
}

// writeRecord replaces the run directory's wedge record. The caller holds
// w.mu or owns w alone.
func (w *Wedge) writeRecord() error {
	var rec WedgeRecord
	for i := range w.Sides {
		rec.Sides[i] = w.Sides[i].record()
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(w.RunDir, WedgeFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the wedge record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write the wedge record: %w", err)
	}
	return nil
}

// ReadWedgeRecord reads the record of wedge name; a run directory without one
// matches fs.ErrNotExist. An empty runBase means DefaultRunBase.
func ReadWedgeRecord(name, runBase string) (WedgeRecord, error) {
	return readWedgeRecord(RunDir(name, runBase))
}

func readWedgeRecord(runDir string) (WedgeRecord, error) {
	var rec WedgeRecord
	b, err := os.ReadFile(filepath.Join(runDir, WedgeFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("wedge record %s is damaged: %w", filepath.Join(runDir, WedgeFile), err)
	}
	return rec, nil
}

// IsWedge reports whether run directory runDir is a wedge's.
func IsWedge(runDir string) bool {
	_, err := os.Stat(filepath.Join(runDir, WedgeFile))
	return err == nil
}

// undo removes the record's TUN links from the namespaces still there (the
// routes go with them) and checks that their routing tables are as before.
// A namespace that is gone, or whose file now holds another namespace, had
// nothing left of the wedge.
func (rec WedgeRecord) undo() error {
	var errs []error
	for i, s := range rec.Sides {
		errs = append(errs, s.verify(sideName(i)))
	}
	return errors.Join(errs...)
}

// Verify checks, after the wedge's process is gone, that nothing of it is left
// in either namespace: no TUN link of the wedge, and each routing table as it
// was before the wedge. A leftover link is removed; a table that differs is an
// error saying how.
func (rec WedgeRecord) Verify() error { return rec.undo() }

// verify opens the side's namespace again, if it is still the one the wedge
// was in, removes the TUN link if something kept it, and compares the routing
// table with the copy taken before the wedge.
func (s SideRecord) verify(name string) error {
	if s.Path == "" || s.NetnsID == 0 || s.Link == "" {
		return nil
	}
	n, err := OpenNetnsPath(s.Path)
	if err != nil {
		return nil // gone: so are its TUN and routes
	}
	defer n.Close()
	if n.ID() != s.NetnsID {
		return nil
	}
	if err := removeLink(n, s.Link); err != nil {
		return err
	}
	if s.Before == nil {
		return nil
	}
	now, err := readRoutes(n)
	if err != nil {
		return err
	}
	if d := now.diff(s.Before); d != "" {
		return fmt.Errorf("the wedge is out, but the routing table of side %s (%s) is not as it was before: %s", name, s.Target, d)
	}
	return nil
}

// wedgeOnPair finds a live wedge under runBase between the namespaces with
// inodes a and b, either way round. The caller holds the run base lock.
func wedgeOnPair(runBase string, a, b uint64) (string, bool) {
	ents, err := os.ReadDir(runBase)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		rec, err := readWedgeRecord(filepath.Join(runBase, e.Name()))
		if err != nil {
			continue
		}
		x, y := rec.Sides[0].NetnsID, rec.Sides[1].NetnsID
		if (x == a && y == b || x == b && y == a) && ownerAlive(e.Name(), runBase) {
			return e.Name(), true
		}
	}
	return "", false
}

func ownerAlive(name, runBase string) bool {
	_, ok := Owner(name, runBase)
	return ok
}
