package db

import (
	"container/list"
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps up to max prepared statements, least recently used first
// out. A statement in use is never closed under its user: eviction only
// marks it, and the last release closes it. database/sql prepares a Stmt
// again on each connection it runs on, so a cached statement survives
// reconnects.
type stmtCache struct {
	max int

	mu     sync.Mutex
	byText map[string]*cachedStmt
	lru    list.List // of *cachedStmt, most recent at the front
	closed bool

	hits, misses uint64 // under mu
}

type cachedStmt struct {
	query   string
	stmt    *sql.Stmt
	refs    int
	evicted bool
	elem    *list.Element
}

func newStmtCache(max int) *stmtCache {
	return &stmtCache{max: max, byText: make(map[string]*cachedStmt)}
}

func (c *stmtCache) enabled() bool { return c.max > 0 }

// get returns the statement for query, preparing it (with ctx, outside the
// lock) on a miss. The caller must release it.
func (c *stmtCache) get(ctx context.Context, h *Handle, query string) (*cachedStmt, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if s := c.byText[query]; s != nil {
		s.refs++
		c.hits++
		c.lru.MoveToFront(s.elem)
		c.mu.Unlock()
		return s, nil
	}
	c.misses++
	c.mu.Unlock()

	stmt, err := h.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = stmt.Close()
		return nil, ErrClosed
	}
	if s := c.byText[query]; s != nil { // prepared meanwhile by another worker
		s.refs++
		c.lru.MoveToFront(s.elem)
		c.mu.Unlock()
		_ = stmt.Close()
		return s, nil
	}
	s := &cachedStmt{query: query, stmt: stmt, refs: 1}
	s.elem = c.lru.PushFront(s)
	c.byText[query] = s
	var idle []*sql.Stmt
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.byText, old.query)
		old.evicted = true
		if old.refs == 0 {
			idle = append(idle, old.stmt)
		}
	}
	c.mu.Unlock()
	for _, st := range idle {
		_ = st.Close()
	}
	return s, nil
}

// release returns s; an evicted statement is closed by its last user.
func (c *stmtCache) release(s *cachedStmt) {
	c.mu.Lock()
	s.refs--
	last := s.refs == 0 && s.evicted
	c.mu.Unlock()
	if last {
		_ = s.stmt.Close()
	}
}

// close closes every statement not in use and marks the others, which
// their last release closes. Later gets fail with ErrClosed.
func (c *stmtCache) close() error {
	c.mu.Lock()
	c.closed = true
	var idle []*sql.Stmt
	for e := c.lru.Front(); e != nil; e = e.Next() {
		s := e.Value.(*cachedStmt)
		s.evicted = true
		if s.refs == 0 {
			idle = append(idle, s.stmt)
		}
	}
	c.lru.Init()
	clear(c.byText)
	c.mu.Unlock()
	var errs []error
	for _, st := range idle {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// stats returns the number of cached statements, hits and misses.
func (c *stmtCache) stats() (n int, hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.hits, c.misses
}
