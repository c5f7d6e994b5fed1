package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const commands = `usage:
  proxy [flags]                                      serve
  proxy [flags] user add NAME PASSWORD               add or update a subscriber
  proxy [flags] user del NAME
  proxy [flags] user list
  proxy [flags] gw add ID HOST:PORT -prefix P [-priority N]
  proxy [flags] gw add -id ID -addr HOST:PORT -prefix P [-priority N]
  proxy [flags] gw del ID
  proxy [flags] gw list
  proxy [flags] location list

Flags may also follow the command; "--" ends them (for a password that
starts with "-"). A gateway serves numbers starting with its prefix (digits,
optionally after "+"); -prefix '*' makes a catch-all gateway.

flags:
`

// printUsage writes the commands and the flags.
func printUsage(w io.Writer) {
	fmt.Fprint(w, commands)
	cfg := defaultConfig()
	var file string
	fs := bindFlags(&cfg, &file)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// Input checks for the CLI (the database refuses nothing by itself).
var (
	userRe   = regexp.MustCompile(`^[A-Za-z0-9._~+-]{1,64}$`)
	prefixRe = regexp.MustCompile(`^\+?[0-9]{1,20}$`)
)

const (
	maxPassword = 256
	maxPriority = 1000
)

// runCLI manages the tables: users, gateways, bindings.
func runCLI(cfg Config, args []string, out io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("incomplete command %q; run with -h for the commands", strings.Join(args, " "))
	}
	cmd := args[0] + " " + args[1]
	run, ok := cliCommands[cmd]
	if !ok {
		return fmt.Errorf("unknown command %q; run with -h for the commands", cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Check the arguments before touching the database.
	do, err := run(args[2:])
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	dsn, err := cfg.dsn()
	if err != nil {
		return err
	}
	s, err := OpenStore(ctx, dsn, cfg.Domain)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer s.Close()
	return do(ctx, s, out)
}

// cliAction runs a checked command against the store.
type cliAction func(ctx context.Context, s *Store, out io.Writer) error

// cliCommands parse and check their arguments and return what to run.
var cliCommands = map[string]func(args []string) (cliAction, error){
	"user add":      userAdd,
	"user del":      userDel,
	"user list":     listCmd("subscriber"),
	"gw add":        gwAdd,
	"gw del":        gwDel,
	"gw list":       listCmd("gateway"),
	"location list": listCmd("location"),
}

func userAdd(args []string) (cliAction, error) {
	if len(args) != 2 {
		return nil, errors.New("want NAME PASSWORD")
	}
	name, pw := args[0], args[1]
	if err := checkUser(name); err != nil {
		return nil, err
	}
	switch {
	case pw == "":
		return nil, errors.New("password: must not be empty")
	case len(pw) > maxPassword:
		return nil, fmt.Errorf("password: longer than %d bytes", maxPassword)
	case strings.ContainsFunc(pw, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return nil, errors.New("password: control characters are not allowed")
	}
	return func(ctx context.Context, s *Store, out io.Writer) error {
		if err := s.AddUser(ctx, name, pw); err != nil {
			return err
		}
		fmt.Fprintf(out, "user %s@%s saved\n", name, s.domain)
		return nil
	}, nil
}

func userDel(args []string) (cliAction, error) {
	if len(args) != 1 {
		return nil, errors.New("want NAME")
	}
	name := args[0]
	if err := checkUser(name); err != nil {
		return nil, err
	}
	return func(ctx context.Context, s *Store, out io.Writer) error {
		if err := s.DeleteUser(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(out, "user %s deleted\n", name)
		return nil
	}, nil
}

func checkUser(name string) error {
	if !userRe.MatchString(name) {
		return fmt.Errorf("user name %q: want 1 to 64 letters, digits or . _ ~ + -", name)
	}
	return nil
}

// gateway is a checked "gw add".
type gateway struct {
	id       int
	addr     string
	prefix   string // "" = catch-all
	priority int
}

func gwAdd(args []string) (cliAction, error) {
	g, err := parseGateway(args)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, s *Store, out io.Writer) error {
		if err := s.AddGateway(ctx, g.id, g.addr, g.prefix, g.priority); err != nil {
			return err
		}
		shown := g.prefix
		if shown == "" {
			shown = "* (every number)"
		}
		fmt.Fprintf(out, "gateway %d %s prefix %s priority %d saved\n", g.id, g.addr, shown, g.priority)
		return nil
	}, nil
}

// parseGateway reads "ID HOST:PORT" positionally or as -id/-addr, with
// -prefix (required) and -priority, in any order, with - or --.
func parseGateway(args []string) (gateway, error) {
	fs := flag.NewFlagSet("gw add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	id := fs.String("id", "", "gateway id")
	addr := fs.String("addr", "", "gateway HOST:PORT")
	prefix := fs.String("prefix", "", "number prefix")
	prio := fs.String("priority", "0", "priority")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return gateway{}, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, dst := range []*string{id, addr} {
		if len(pos) > 0 && *dst == "" {
			*dst, pos = pos[0], pos[1:]
		}
	}
	if len(pos) > 0 {
		return gateway{}, fmt.Errorf("unexpected argument %q", pos[0])
	}
	var g gateway
	var err error
	if g.id, err = checkGatewayID(*id); err != nil {
		return g, err
	}
	if g.addr, err = checkGatewayAddr(*addr); err != nil {
		return g, err
	}
	switch {
	case !set["prefix"]:
		return g, errors.New("prefix: required (-prefix +44, or -prefix '*' for every number)")
	case *prefix == "*":
		g.prefix = ""
	case prefixRe.MatchString(*prefix):
		g.prefix = *prefix
	default:
		return g, fmt.Errorf("prefix %q: want digits, optionally after +, or *", *prefix)
	}
	if g.priority, err = strconv.Atoi(*prio); err != nil || g.priority < 0 || g.priority > maxPriority {
		return g, fmt.Errorf("priority %q: want a number 0..%d (lower is tried first)", *prio, maxPriority)
	}
	return g, nil
}

func checkGatewayID(s string) (int, error) {
	if s == "" {
		return 0, errors.New("gateway id: missing (gw add ID HOST:PORT -prefix P, or -id ID)")
	}
	id, err := strconv.Atoi(s)
	if err != nil || id < 1 || id > math.MaxInt32 {
		return 0, fmt.Errorf("gateway id %q: want a whole number from 1", s)
	}
	return id, nil
}

// checkGatewayAddr accepts HOST:PORT or sip:HOST:PORT (HOST an IP address
// or a DNS name) and returns HOST:PORT.
func checkGatewayAddr(a string) (string, error) {
	if a == "" {
		return "", errors.New("gateway address: missing (HOST:PORT, or -addr)")
	}
	hp := strings.TrimPrefix(a, "sip:")
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", fmt.Errorf("gateway address %q: want HOST:PORT, such as 192.0.2.10:5060", a)
	}
	if !validHost(host) {
		return "", fmt.Errorf("gateway address %q: %q is not an IP address or host name", a, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("gateway address %q: port must be 1..65535", a)
	}
	return hp, nil
}

func gwDel(args []string) (cliAction, error) {
	if len(args) != 1 {
		return nil, errors.New("want ID")
	}
	id, err := checkGatewayID(args[0])
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, s *Store, out io.Writer) error {
		if err := s.DeleteGateway(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "gateway %d deleted\n", id)
		return nil
	}, nil
}

// listCmd prints a table with a header line.
func listCmd(table string) func(args []string) (cliAction, error) {
	return func(args []string) (cliAction, error) {
		if len(args) != 0 {
			return nil, fmt.Errorf("unexpected argument %q", args[0])
		}
		return func(ctx context.Context, s *Store, out io.Writer) error {
			rows, err := s.List(ctx, table)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			now := time.Now()
			switch table {
			case "subscriber":
				fmt.Fprintln(tw, "USER")
				for _, r := range rows.All() {
					fmt.Fprintln(tw, r.String(0))
				}
			case "gateway":
				fmt.Fprintln(tw, "ID\tADDRESS\tPREFIX\tPRIORITY")
				for _, r := range rows.All() {
					p := r.String(2)
					if p == "" {
						p = "*"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.String(0), r.String(1), p, r.String(3))
				}
			case "location":
				fmt.Fprintln(tw, "USER\tCONTACT\tEXPIRES (UTC)\tREMAINING")
				for _, r := range rows.All() {
					at := time.Unix(r.Int(2), 0)
					left := "expired"
					if d := at.Sub(now).Truncate(time.Second); d > 0 {
						left = d.String()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.String(0), r.String(1), at.UTC().Format(time.DateTime), left)
				}
			}
			return tw.Flush()
		}, nil
	}
}
