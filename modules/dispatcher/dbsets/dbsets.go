// Package dbsets loads dispatcher destination sets from a database table
// through modules/db, at start-up or from a timer job, the way Kamailio's
// dispatcher reads its `dispatcher` table. It is apart from package
// dispatcher so that a dispatcher loaded from code or JSON does not link
// the database drivers.
//
// The query returns one row per target with these columns (any order;
// only set_id and uri are required):
//
//	set_id    TEXT     the set
//	uri       TEXT     the target URI
//	weight    INTEGER  Target.Weight (NULL: 1)
//	priority  INTEGER  Target.Priority (NULL: 0)
//	algorithm TEXT     the set's algorithm name ("weighted"…; NULL: round-robin);
//	                   rows of one set must agree
//	attrs     TEXT     a JSON object of strings (NULL: none)
//
// At start-up (blocking, off the loops):
//
//	rows, err := h.QueryContext(ctx, dbsets.Query("dispatcher"))
//	sets, err := dbsets.Sets(rows)
//	err = d.Replace(sets...)
//
// Reloaded every minute from a timer job, without blocking a loop:
//
//	job, _ := srv.Group().Every(time.Minute, func(l *reactor.Loop) {
//		async.Launch(l, dbsets.Load(h, dbsets.Query("dispatcher")), func(sets []dispatcher.SetConfig, err error) {
//			if err == nil {
//				err = d.Replace(sets...)
//			}
//			if err != nil {
//				l.Logger().Warn("dispatcher reload", "err", err)
//			}
//		})
//	}, reactor.Skip)
package dbsets

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/reactor"
)

// ErrBadRow: a row lacks set_id or uri, has attrs that are not a JSON
// object of strings, or names another algorithm than its set's other rows.
var ErrBadRow = errors.New("dbsets: bad row")

// Query returns the SELECT of every column Sets reads from table, in a
// stable order (by set, priority, URI). table is the operator's
// configuration, never a caller's input.
func Query(table string) string {
	return "SELECT set_id, uri, weight, priority, algorithm, attrs FROM " + table + " ORDER BY set_id, priority, uri"
}

// Sets turns rows into destination sets, in the order of their first row.
// The targets are validated by dispatcher.New or Replace.
func Sets(rows *db.Rows) ([]dispatcher.SetConfig, error) {
	if rows.Index("set_id") < 0 || rows.Index("uri") < 0 {
		return nil, fmt.Errorf("%w: columns set_id and uri required, got %v", ErrBadRow, rows.Columns())
	}
	var sets []dispatcher.SetConfig
	index := map[string]int{}
	algSet := map[string]bool{}
	for i, row := range rows.All() {
		id, uri := row.Named("set_id").String(), row.Named("uri").String()
		if id == "" || uri == "" {
			return nil, fmt.Errorf("%w: row %d: set_id and uri must not be empty", ErrBadRow, i)
		}
		t := dispatcher.Target{URI: uri, Weight: int(row.Named("weight").Int()), Priority: int(row.Named("priority").Int())}
		if a := row.Named("attrs"); a.Exists() && !a.IsNull() && a.String() != "" {
			if err := json.Unmarshal([]byte(a.String()), &t.Attrs); err != nil {
				return nil, fmt.Errorf("%w: row %d: attrs: %v", ErrBadRow, i, err)
			}
		}
		k, ok := index[id]
		if !ok {
			k = len(sets)
			index[id] = k
			sets = append(sets, dispatcher.SetConfig{ID: id})
		}
		if a := row.Named("algorithm"); a.Exists() && !a.IsNull() && a.String() != "" {
			var alg dispatcher.Algorithm
			if err := alg.UnmarshalText([]byte(a.String())); err != nil {
				return nil, fmt.Errorf("%w: row %d: %v", ErrBadRow, i, err)
			}
			if algSet[id] && sets[k].Algorithm != alg {
				return nil, fmt.Errorf("%w: row %d: set %q has algorithms %s and %s", ErrBadRow, i, id, sets[k].Algorithm, alg)
			}
			sets[k].Algorithm, algSet[id] = alg, true
		}
		sets[k].Targets = append(slices.Clip(sets[k].Targets), t)
	}
	return sets, nil
}

// Load returns an op that runs query on h (off the loop, on the handle's
// pool) and completes with its rows turned into sets (Sets).
func Load(h *db.Handle, query string, args ...any) async.Op[[]dispatcher.SetConfig] {
	q := h.Query(query, args...)
	return async.OpFunc[[]dispatcher.SetConfig](func(l *reactor.Loop, done func([]dispatcher.SetConfig, error)) func() {
		return q.Start(l, func(rows *db.Rows, err error) {
			if err != nil {
				done(nil, err)
				return
			}
			done(Sets(rows))
		})
	})
}
