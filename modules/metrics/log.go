package metrics

import (
	"fmt"
	"log"
	"log/slog"
)

// slogAdapter routes the error logs of promhttp and net/http to slog.
type slogAdapter struct{ l *slog.Logger }

// Println implements promhttp.Logger.
func (a slogAdapter) Println(v ...any) {
	a.l.Error("metrics: " + fmt.Sprint(v...))
}

// std returns a *log.Logger for http.Server.ErrorLog.
func (a slogAdapter) std() *log.Logger { return slog.NewLogLogger(a.l.Handler(), slog.LevelError) }
