package tm

import (
	"sync/atomic"

	"github.com/asyncsip/asyncsip/reactor"
)

// counters are the server's counters, read by Stats as a StatsSnapshot.
type counters struct {
	received, sent, sendErrors, handoffs atomic.Uint64
	drops                                [numDropReasons]atomic.Uint64
	stxCreated, stxDone                  atomic.Uint64
	ctxCreated, ctxDone                  atomic.Uint64
	suspended, inProgress                atomic.Int64
	suspendTimeouts, abandoned, panics   atomic.Uint64
	retransAbsorbed, stateless           atomic.Uint64
	overload                             atomic.Uint64
	tombstones                           atomic.Int64
}

// StatsSnapshot is a copy of the counters at one moment.
type StatsSnapshot struct {
	// Received counts what was handed to Receive (keep-alives included).
	// Sent counts the messages tm handed to a transport, retransmissions
	// and ACKs included (the total of Messages' outbound counters);
	// SendErrors those the transport refused. Handoffs counts messages
	// passed from the loop that read them to the loop owning their call.
	Received, Sent, SendErrors, Handoffs uint64
	// Drops by reason.
	DropParse, DropSize, DropHeaders, DropInvalid, DropOther, DropClosed uint64
	// DropStray: responses that match no transaction and are not ours.
	// DropRoute: messages whose next hop could not be resolved or was us.
	// DropQueue: provisionals beyond MaxQueuedReplies while suspended.
	// DropAmplification: stateless answers larger than the request.
	// DropUnanswerable: requests whose answer could not be built.
	DropStray, DropRoute, DropQueue, DropAmplification, DropUnanswerable uint64
	// DropSource: responses from another address (or connection) than the
	// one their branch was sent to. DropVia: responses whose Via below ours
	// is not the one the request came with (or whose branch fails its
	// MAC). DropUnsigned: in-dialog requests without our signed
	// Record-Route (refused 403, an ACK dropped). DropRouteSet: initial
	// requests refused for a Route chosen by their sender. DropScreened:
	// requests Routes.Screen dropped.
	DropSource, DropVia, DropUnsigned, DropRouteSet, DropScreened uint64
	// Tombstones is the number of completed transactions kept only to
	// absorb retransmissions; TransactionBytes the memory accounted to
	// transactions and tombstones against Config.MaxTransactionBytes.
	Tombstones, TransactionBytes int64
	// ServerTx and ClientTx count transactions created and completed.
	ServerTxCreated, ServerTxDone uint64
	ClientTxCreated, ClientTxDone uint64
	// Suspended is the number of transactions suspended now.
	Suspended int64
	// InProgress is the number of server transactions without a final
	// response yet (what a graceful drain waits for).
	InProgress int64
	// SuspendTimeouts counts suspensions that hit Timers.SuspendBound.
	SuspendTimeouts uint64
	// Abandoned counts routes that returned without acting.
	Abandoned uint64
	// Panics counts panics recovered in routes.
	Panics uint64
	// RetransAbsorbed counts request retransmissions absorbed by a transaction.
	RetransAbsorbed uint64
	// Stateless counts messages forwarded without a transaction.
	Stateless uint64
	// Overload counts requests refused (503) or suspensions refused
	// (ErrOverloaded) because a bound was reached.
	Overload uint64
	// Originated counts the requests the proxy sent on its own (uac.go).
	Originated OriginatedStats
}

// Drop reasons, in the order of dropNames.
const (
	dropOther = iota
	dropParse
	dropSize
	dropHeaders
	dropInvalid
	dropClosed
	dropStray
	dropRoute
	dropQueue
	dropAmplify
	dropUnanswerable
	dropSource
	dropVia
	dropUnsigned
	dropRouteSet
	dropScreened
	numDropReasons
)

// dropNames are the reasons callers pass to countDrop.
var dropNames = [numDropReasons]string{"other", "parse", "size", "headers", "invalid", "closed",
	"stray", "route", "queue", "amplification", "unanswerable", "source", "via", "unsigned", "routeset", "screened"}

// countDrop counts a dropped message by reason; an unknown reason counts as
// "other". Drops are rare, so a scan of the names is cheap enough.
func (s *counters) countDrop(reason string) {
	for i, n := range dropNames {
		if n == reason {
			s.drops[i].Add(1)
			return
		}
	}
	s.drops[dropOther].Add(1)
}

func (s *counters) snapshot() StatsSnapshot {
	return StatsSnapshot{
		Received: s.received.Load(), Sent: s.sent.Load(), SendErrors: s.sendErrors.Load(), Handoffs: s.handoffs.Load(),
		DropParse: s.drops[dropParse].Load(), DropSize: s.drops[dropSize].Load(), DropHeaders: s.drops[dropHeaders].Load(),
		DropInvalid: s.drops[dropInvalid].Load(), DropOther: s.drops[dropOther].Load(), DropClosed: s.drops[dropClosed].Load(),
		DropStray: s.drops[dropStray].Load(), DropRoute: s.drops[dropRoute].Load(), DropQueue: s.drops[dropQueue].Load(),
		DropAmplification: s.drops[dropAmplify].Load(), DropUnanswerable: s.drops[dropUnanswerable].Load(),
		DropSource: s.drops[dropSource].Load(), DropVia: s.drops[dropVia].Load(),
		DropUnsigned: s.drops[dropUnsigned].Load(), DropRouteSet: s.drops[dropRouteSet].Load(),
		DropScreened:    s.drops[dropScreened].Load(),
		Tombstones:      s.tombstones.Load(),
		ServerTxCreated: s.stxCreated.Load(), ServerTxDone: s.stxDone.Load(),
		ClientTxCreated: s.ctxCreated.Load(), ClientTxDone: s.ctxDone.Load(),
		Suspended: s.suspended.Load(), InProgress: s.inProgress.Load(), SuspendTimeouts: s.suspendTimeouts.Load(),
		Abandoned: s.abandoned.Load(), Panics: s.panics.Load(),
		RetransAbsorbed: s.retransAbsorbed.Load(), Stateless: s.stateless.Load(),
		Overload: s.overload.Load(),
	}
}

// Tables returns the number of server and client transactions in loop l's
// tables now: what the counters say is alive (created - completed), counted
// independently. Call it on l; observability samples it there.
func (s *Server) Tables(l *reactor.Loop) (server, client int) {
	id := l.ID()
	if id < 0 || id >= len(s.loops) || s.loops[id].loop != l {
		return 0, 0
	}
	ls := s.loops[id]
	return len(ls.stx), len(ls.ctx)
}
