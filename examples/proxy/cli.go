package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"
)

const usage = `usage:
  proxy [flags]                                   serve
  proxy [flags] user add NAME PASSWORD            add or update a subscriber
  proxy [flags] user del NAME
  proxy [flags] user list
  proxy [flags] gw add ID HOST:PORT [--prefix P] [--priority N]
  proxy [flags] gw del ID
  proxy [flags] gw list
  proxy [flags] location list`

// runCLI manages the tables: users, gateways, bindings.
func runCLI(cfg Config, args []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(args) < 2 {
		return fmt.Errorf("missing command\n%s", usage)
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
	switch args[0] + " " + args[1] {
	case "user add":
		if len(args) != 4 {
			return fmt.Errorf("user add takes NAME PASSWORD\n%s", usage)
		}
		if err := s.AddUser(ctx, args[2], args[3]); err != nil {
			return err
		}
		fmt.Fprintf(out, "user %s@%s saved\n", args[2], cfg.Domain)
	case "user del":
		if len(args) != 3 {
			return fmt.Errorf("user del takes NAME\n%s", usage)
		}
		if err := s.DeleteUser(ctx, args[2]); err != nil {
			return err
		}
		fmt.Fprintf(out, "user %s deleted\n", args[2])
	case "gw add":
		return gwAdd(ctx, s, args[2:], out)
	case "gw del":
		if len(args) != 3 {
			return fmt.Errorf("gw del takes ID\n%s", usage)
		}
		id, err := strconv.Atoi(args[2])
		if err != nil {
			return fmt.Errorf("gateway id %q is not a number", args[2])
		}
		if err := s.DeleteGateway(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "gateway %d deleted\n", id)
	case "user list", "gw list", "location list":
		table := map[string]string{"user": "subscriber", "gw": "gateway", "location": "location"}[args[0]]
		rows, err := s.List(ctx, table)
		if err != nil {
			return err
		}
		for _, r := range rows.All() {
			for i := 0; i < r.Len(); i++ {
				if i > 0 {
					fmt.Fprint(out, "\t")
				}
				fmt.Fprint(out, r.String(i))
			}
			fmt.Fprintln(out)
		}
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0]+" "+args[1], usage)
	}
	return nil
}

func gwAdd(ctx context.Context, s *Store, args []string, out io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("gw add takes ID HOST:PORT [--prefix P] [--priority N]\n%s", usage)
	}
	id, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("gateway id %q is not a number", args[0])
	}
	fs := flag.NewFlagSet("gw add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	prefix := fs.String("prefix", "", "number prefix this gateway serves")
	prio := fs.Int("priority", 0, "lower is tried first among equal prefixes")
	if err := fs.Parse(args[2:]); err != nil {
		return fmt.Errorf("gw add: %w", err)
	}
	if err := s.AddGateway(ctx, id, args[1], *prefix, *prio); err != nil {
		return err
	}
	fmt.Fprintf(out, "gateway %d %s prefix %q priority %d saved\n", id, args[1], *prefix, *prio)
	return nil
}
