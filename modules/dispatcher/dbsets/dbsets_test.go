package dbsets_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/modules/dispatcher/dbsets"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, rows string) *db.Handle {
	t.Helper()
	h, err := db.Open("sqlite", ":memory:", db.Timeout(2*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	_, err = h.ExecContext(context.Background(), `
		CREATE TABLE dispatcher (id INTEGER PRIMARY KEY, set_id TEXT NOT NULL, uri TEXT NOT NULL,
			weight INTEGER, priority INTEGER, algorithm TEXT, attrs TEXT);`+rows)
	require.NoError(t, err)
	return h
}

const table = `
	INSERT INTO dispatcher (set_id, uri, weight, priority, algorithm, attrs) VALUES
		('gw', 'sip:10.0.0.1:5060', 2, 1, 'weighted', '{"carrier":"a"}'),
		('gw', 'sip:10.0.0.2:5060', 1, 2, 'weighted', NULL),
		('pstn', '10.0.1.1', NULL, NULL, NULL, '');`

func TestSetsFromTable(t *testing.T) {
	h := open(t, table)
	rows, err := h.QueryContext(context.Background(), dbsets.Query("dispatcher"))
	require.NoError(t, err)
	sets, err := dbsets.Sets(rows)
	require.NoError(t, err)
	assert.Equal(t, []dispatcher.SetConfig{
		{ID: "gw", Algorithm: dispatcher.Weighted, Targets: []dispatcher.Target{
			{URI: "sip:10.0.0.1:5060", Weight: 2, Priority: 1, Attrs: map[string]string{"carrier": "a"}},
			{URI: "sip:10.0.0.2:5060", Weight: 1, Priority: 2},
		}},
		{ID: "pstn", Targets: []dispatcher.Target{{URI: "10.0.1.1"}}},
	}, sets)
	d, err := dispatcher.New(dispatcher.Config{Sets: sets})
	require.NoError(t, err)
	assert.Len(t, d.Targets(), 3)
}

// Load runs the query off the loop and reports the sets on it: a reload
// from a timer job.
func TestLoadOnALoop(t *testing.T) {
	h := open(t, table)
	d, err := dispatcher.New(dispatcher.Config{})
	require.NoError(t, err)
	l, err := reactor.New(reactor.Config{})
	require.NoError(t, err)
	l.Start()
	defer func() { require.NoError(t, l.Stop(context.Background())) }()
	done := make(chan error, 1)
	require.NoError(t, l.Post(func() {
		async.Launch(l, dbsets.Load(h, dbsets.Query("dispatcher")), func(sets []dispatcher.SetConfig, err error) {
			if err == nil {
				err = d.Replace(sets...)
			}
			done <- err
		}, async.Timeout(5*time.Second))
	}))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10 s")
	}
	assert.Len(t, d.Sets(), 2)

	done2 := make(chan error, 1)
	require.NoError(t, l.Post(func() {
		async.Launch(l, dbsets.Load(h, "SELECT nope FROM dispatcher"), func(_ []dispatcher.SetConfig, err error) { done2 <- err },
			async.Timeout(5*time.Second))
	}))
	select {
	case err := <-done2:
		assert.Error(t, err, "a failing query reaches the report")
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10 s")
	}
}

func TestBadRows(t *testing.T) {
	for name, c := range map[string]struct{ rows, query string }{
		"no uri column": {table, "SELECT set_id FROM dispatcher"},
		"empty uri":     {`INSERT INTO dispatcher (set_id, uri) VALUES ('gw', '');`, dbsets.Query("dispatcher")},
		"bad attrs":     {`INSERT INTO dispatcher (set_id, uri, attrs) VALUES ('gw', 'sip:a', '[1]');`, dbsets.Query("dispatcher")},
		"bad algorithm": {`INSERT INTO dispatcher (set_id, uri, algorithm) VALUES ('gw', 'sip:a', 'random');`, dbsets.Query("dispatcher")},
		"algorithms disagree": {`INSERT INTO dispatcher (set_id, uri, algorithm) VALUES ('gw', 'sip:a', 'weighted'), ('gw', 'sip:b', 'priority');`,
			dbsets.Query("dispatcher")},
	} {
		t.Run(name, func(t *testing.T) {
			h := open(t, c.rows)
			rows, err := h.QueryContext(context.Background(), c.query)
			require.NoError(t, err)
			_, err = dbsets.Sets(rows)
			assert.ErrorIs(t, err, dbsets.ErrBadRow)
		})
	}
}
