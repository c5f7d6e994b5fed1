// Command sipgoproxy is the sipgo baseline of the bench/ comparisons: a
// stateful proxy written the way sipgo's documentation suggests, with its
// Server and Client handles and one goroutine per transaction that relays the
// client transaction's responses to the server transaction.
//
//	sipgoproxy -scenario relay -listen 127.0.0.1:5070 -target 127.0.0.1:5080
//
// Scenarios: relay (initial requests go to -target, with Record-Route) and
// sleep (the transaction goroutine sleeps 20 ms first: in sipgo's model a
// goroutine per transaction is the way to wait). In-dialog requests are
// loose-routed. It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// sipgo's package-level logger (used by its transports): errors only.
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(ctx, os.Args[1:], nil); err != nil {
		fmt.Fprintln(os.Stderr, "sipgoproxy:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends; ready, if set, is closed once listening.
func run(ctx context.Context, args []string, ready chan struct{}) error {
	fs := flag.NewFlagSet("sipgoproxy", flag.ContinueOnError)
	scenario := fs.String("scenario", "relay", "relay | sleep")
	listen := fs.String("listen", "127.0.0.1:5060", "UDP listening address (udp: prefix allowed)")
	target := fs.String("target", "127.0.0.1:5080", "downstream UAS host:port")
	delay := fs.Duration("delay", 20*time.Millisecond, "sleep: time slept before relaying")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit")
	logLevel := fs.String("log-level", "error", "debug | info | warn | error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	addr := trimScheme(*listen)
	p, err := newProxy(*scenario, addr, *target, *delay, logger)
	if err != nil {
		return err
	}
	defer p.close()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if ready != nil {
		ctx = context.WithValue(ctx, sipgo.ListenReadyCtxKey, sipgo.ListenReadyCtxValue(ready))
	}
	fmt.Fprintf(os.Stderr, "sipgoproxy: scenario=%s listening on %s target=%s\n", *scenario, addr, *target)
	err = p.srv.ListenAndServe(ctx, "udp", addr)
	if ctx.Err() != nil {
		return nil // closed by the signal
	}
	return err
}

func trimScheme(s string) string {
	if len(s) > 4 && s[:4] == "udp:" {
		return s[4:]
	}
	return s
}

// proxy holds the sipgo handles and the routing decision.
type proxy struct {
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	self   string // our host:port, to recognise our own Route
	target string
	delay  time.Duration // 0 for relay
	log    *slog.Logger
}

func newProxy(scenario, addr, target string, delay time.Duration, log *slog.Logger) (*proxy, error) {
	switch scenario {
	case "relay":
		delay = 0
	case "sleep":
	default:
		return nil, fmt.Errorf("unknown scenario %q (want relay or sleep)", scenario)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-listen %q: %w", addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return nil, fmt.Errorf("-listen %q: bad port", addr)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(host))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, err
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientAddr(addr), sipgo.WithClientLogger(log))
	if err != nil {
		return nil, err
	}
	p := &proxy{ua: ua, srv: srv, client: client, self: addr, target: target, delay: delay, log: log}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.BYE, sip.OPTIONS, sip.INFO, sip.UPDATE, sip.MESSAGE} {
		srv.OnRequest(m, p.relay)
	}
	srv.OnAck(p.ack)
	return p, nil
}

func (p *proxy) close() { _ = p.ua.Close() }

// nextHop strips our own Route and chooses where req goes: the next Route,
// the Request-URI of an in-dialog request, or the target of a new call.
func (p *proxy) nextHop(req *sip.Request) (dst string, initial bool) {
	if r := req.Route(); r != nil && r.Address.Host+":"+strconv.Itoa(r.Address.Port) == p.self {
		req.RemoveHeader("Route")
	}
	if r := req.Route(); r != nil {
		return hostPort(r.Address), false
	}
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		return hostPort(req.Recipient), false
	}
	return p.target, true
}

func hostPort(u sip.Uri) string {
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(port))
}

func (p *proxy) reply(tx sip.ServerTransaction, req *sip.Request, code int, reason string) {
	if err := tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)); err != nil {
		p.log.Debug("respond", "error", err)
	}
}

// relay is the goroutine of one server transaction: it waits (sleep
// scenario), starts the client transaction and copies its responses back.
func (p *proxy) relay(req *sip.Request, tx sip.ServerTransaction) {
	fwd := req.Clone()
	dst, initial := p.nextHop(fwd)
	if initial && p.delay > 0 {
		time.Sleep(p.delay)
	}
	fwd.SetDestination(dst)
	opts := []sipgo.ClientRequestOption{sipgo.ClientRequestDecreaseMaxForward, sipgo.ClientRequestAddVia}
	if initial {
		opts = append(opts, sipgo.ClientRequestAddRecordRoute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // Timer C
	defer cancel()
	clTx, err := p.client.TransactionRequest(ctx, fwd, opts...)
	if err != nil {
		p.log.Debug("client transaction", "error", err)
		p.reply(tx, req, 503, "Service Unavailable")
		return
	}
	defer clTx.Terminate()
	if fwd.IsInvite() {
		// sipgo answers the CANCEL itself; the branch needs one of its own.
		tx.OnCancel(func(*sip.Request) { go p.cancel(fwd) })
	}
	for {
		select {
		case <-ctx.Done():
			p.reply(tx, req, 408, "Request Timeout")
			return
		case res, more := <-clTx.Responses():
			if !more {
				return
			}
			res.RemoveHeader("Via")
			if err := tx.Respond(res); err != nil {
				p.log.Debug("respond", "error", err)
			}
			if res.StatusCode >= 200 {
				return
			}
		case <-clTx.Done():
			if err := clTx.Err(); err != nil && !errors.Is(err, context.Canceled) {
				p.reply(tx, req, 408, "Request Timeout")
			}
			return
		case <-tx.Done():
			return
		}
	}
}

// ack forwards an ACK for a 2xx (end to end, no transaction).
func (p *proxy) ack(req *sip.Request, _ sip.ServerTransaction) {
	fwd := req.Clone()
	dst, _ := p.nextHop(fwd)
	fwd.SetDestination(dst)
	if err := p.client.WriteRequest(fwd, sipgo.ClientRequestDecreaseMaxForward, sipgo.ClientRequestAddVia); err != nil {
		p.log.Debug("ack", "error", err)
	}
}

// cancel sends a CANCEL for the forwarded INVITE (same branch, RFC 3261
// §9.1) and waits, bounded, for its final response.
func (p *proxy) cancel(inv *sip.Request) {
	c := sip.NewRequest(sip.CANCEL, inv.Recipient)
	c.AppendHeader(inv.Via().Clone())
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.SetDestination(inv.Destination())
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	keep := func(*sipgo.Client, *sip.Request) error { return nil } // headers are complete
	ctx2, err := p.client.TransactionRequest(ctx, c, keep)
	if err != nil {
		p.log.Debug("cancel", "error", err)
		return
	}
	defer ctx2.Terminate()
	for {
		select {
		case res, more := <-ctx2.Responses():
			if !more || res.StatusCode >= 200 {
				return
			}
		case <-ctx2.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}
