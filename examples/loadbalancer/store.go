package main

import (
	"sync"

	"github.com/asyncsip/asyncsip/modules/dialog"
)

// moveStore is a dialog.Store that lets a call move from one destination's
// count to another's when the failure route fails it over. modules/dialog
// counts a call under the profile values given to Track and releases
// exactly those when it ends; it has no call to change them. So a move
// joins the new destination (under its limit, atomically) and leaves the
// old one at once, and when the call ends the release the tracker makes
// of the old value is skipped and the new one is released instead.
// Counts are fungible: a skipped Leave may be another call's of the same
// value, whose own Leave then applies — the totals are the same.
type moveStore struct {
	dialog.Store
	mu    sync.Mutex
	moved map[dialog.ID]move
	skip  map[string]int // Profile value → tracker Leaves to skip
}

type move struct{ tracked, now string }

func newMoveStore(inner dialog.Store) *moveStore {
	return &moveStore{Store: inner, moved: map[dialog.ID]move{}, skip: map[string]int{}}
}

// move counts the call id under to instead of from (its current
// destination), unless to has limit calls already (limit 0: none).
func (s *moveStore) move(id dialog.ID, from, to string, limit int) bool {
	if _, ok := s.Store.Join(Profile, to, limit); !ok {
		return false
	}
	s.Store.Leave(Profile, from)
	s.mu.Lock()
	m, ok := s.moved[id]
	if !ok {
		m.tracked = from
	}
	m.now = to
	s.moved[id] = m
	s.mu.Unlock()
	return true
}

// Delete implements dialog.Store: for a moved call, the release of the
// value it was tracked under (which move left already) is replaced by the
// release of the value it moved to.
func (s *moveStore) Delete(id dialog.ID) bool {
	ok := s.Store.Delete(id)
	s.mu.Lock()
	m, moved := s.moved[id]
	delete(s.moved, id)
	if ok && moved {
		s.skip[m.tracked]++
	}
	s.mu.Unlock()
	if ok && moved {
		s.Store.Leave(Profile, m.now)
	}
	return ok
}

// Leave implements dialog.Store.
func (s *moveStore) Leave(name, value string) int {
	if name == Profile {
		s.mu.Lock()
		if s.skip[value] > 0 {
			if s.skip[value]--; s.skip[value] == 0 {
				delete(s.skip, value)
			}
			s.mu.Unlock()
			return s.Store.Count(name, value)
		}
		s.mu.Unlock()
	}
	return s.Store.Leave(name, value)
}

// Get implements dialog.Store: a moved call's record names the
// destination it is counted under now.
func (s *moveStore) Get(id dialog.ID) (dialog.Record, bool) {
	rec, ok := s.Store.Get(id)
	s.mu.Lock()
	m, moved := s.moved[id]
	s.mu.Unlock()
	if ok && moved {
		ps := append([]dialog.ProfileValue(nil), rec.Profiles...)
		for i := range ps {
			if ps[i].Profile == Profile && ps[i].Value == m.tracked {
				ps[i].Value = m.now
			}
		}
		rec.Profiles = ps
	}
	return rec, ok
}
