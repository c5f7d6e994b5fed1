//go:build tools

// Package deps pins module dependencies that several packages use, so that
// parallel work on the tree never needs to edit go.mod at the same time.
package deps

import (
	_ "github.com/emiago/sipgo/sip"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/stretchr/testify/require"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sys/unix"
	_ "modernc.org/sqlite"
)
