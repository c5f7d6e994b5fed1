package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// readmeBlocks returns the fenced code blocks of README.md in the language
// lang, each as its lines (continuation backslashes joined).
func readmeBlocks(t *testing.T, lang string) [][]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var blocks [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, cur)
		case in:
			if n := len(cur); n > 0 && strings.HasSuffix(cur[n-1], "\\") {
				cur[n-1] = strings.TrimSuffix(cur[n-1], "\\") + " " + strings.TrimSpace(line)
				continue
			}
			cur = append(cur, line)
		}
	}
	return blocks
}

// readmeCommands returns the README's shell lines starting with prefix,
// comments stripped, as words.
func readmeCommands(t *testing.T, prefix string) [][]string {
	var out [][]string
	for _, block := range readmeBlocks(t, "sh") {
		for _, line := range block {
			if i := strings.Index(line, "#"); i >= 0 {
				line = line[:i]
			}
			if strings.HasPrefix(strings.TrimSpace(line), prefix) {
				out = append(out, strings.Fields(line))
			}
		}
	}
	return out
}

// portMap moves the README's fixed ports to free ones, so the test can run
// beside anything else.
type portMap map[string]string

func (m portMap) apply(s string) string {
	for from, to := range m {
		if s == from {
			return to
		}
		s = strings.ReplaceAll(s, ":"+from, ":"+to)
	}
	return s
}

// Every SIPp command line of the README succeeds against the built proxy,
// started as the README says (after the README's user and gateway lines).
func TestReadmeSIPp(t *testing.T) {
	sipp.Path(t)
	data := t.TempDir()
	pp := testenv.FreeUDPPort(t)
	ports := portMap{"5060": strconv.Itoa(pp)}
	for _, p := range []string{"5070", "5080", "5090"} {
		ports[p] = strconv.Itoa(testenv.FreeUDPPort(t))
	}
	fix := func(args []string) []string {
		out := make([]string, 0, len(args))
		for _, a := range args {
			out = append(out, ports.apply(strings.ReplaceAll(a, "/tmp/proxy-demo", data)))
		}
		return out
	}

	var serveArgs []string
	ran := 0
	for _, words := range readmeCommands(t, "go run ./examples/proxy -data /tmp/proxy-demo") {
		args := fix(words[3:])
		if len(args) > 2 && (args[2] == "user" || args[2] == "gw") {
			cli(t, args...)
			ran++
		} else if strings.Contains(strings.Join(args, " "), "-digest MD5") {
			serveArgs = args
		}
	}
	require.Equal(t, 3, ran, "the README's quick start adds two users and a gateway")
	require.NotNil(t, serveArgs, "the README starts the proxy with -digest MD5 for SIPp")
	startProxyOn(t, []string{fmt.Sprintf("udp:127.0.0.1:%d", pp)}, serveArgs...)

	lines := readmeCommands(t, "sipp ")
	require.Len(t, lines, 5, "SIPp lines in the README")
	var uas *sipp.Process
	for _, words := range lines {
		cfg := sippConfig(t, fix(words[1:]))
		if strings.HasSuffix(cfg.Scenario, "uas.xml") {
			uas = sipp.Start(t, cfg)
			continue
		}
		res := sipp.Run(t, cfg)
		require.Equal(t, 0, res.ExitCode, "%v\n%s", words, res)
		require.Equal(t, 1, res.Successful, "%v\n%s", words, res)
		if strings.HasSuffix(cfg.Scenario, "uac.xml") {
			require.NotNil(t, uas, "a uas.xml line comes before each call")
			ures := uas.Stop()
			assert.Equal(t, 1, ures.Successful, "the called side: %s", ures)
			uas = nil
		}
	}
}

// sippConfig turns a README SIPp command line into a sipp.Config (the
// runner adds -i 127.0.0.1 and its own trace files).
func sippConfig(t *testing.T, args []string) sipp.Config {
	cfg := sipp.Config{Timeout: 30 * time.Second}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			require.Equal(t, len(args)-1, i, "only the remote address comes last: %v", args)
			cfg.Remote = a
			continue
		}
		require.Less(t, i+1, len(args), "flag %s needs a value", a)
		v := args[i+1]
		i++
		switch a {
		case "-sf":
			cfg.Scenario = filepath.Join("..", "..", v) // the README runs from the repository root
		case "-i":
			require.Equal(t, "127.0.0.1", v)
		case "-p":
			cfg.LocalPort, _ = strconv.Atoi(v)
		case "-m":
			cfg.Calls, _ = strconv.Atoi(v)
		case "-s":
			cfg.Service = v
		default:
			cfg.Args = append(cfg.Args, a, v)
		}
	}
	require.NotEmpty(t, cfg.Scenario)
	require.FileExists(t, cfg.Scenario)
	return cfg
}

// The README's config file example is accepted as it is.
func TestReadmeConfigExample(t *testing.T) {
	blocks := readmeBlocks(t, "json")
	require.Len(t, blocks, 1)
	raw := []byte(strings.Join(blocks[0], "\n"))
	require.True(t, json.Valid(raw))
	file := filepath.Join(t.TempDir(), "proxy.json")
	require.NoError(t, os.WriteFile(file, raw, 0o600))
	cfg, _, err := parseConfig([]string{"-config", file})
	require.NoError(t, err)
	assert.Equal(t, "sip.example.com", cfg.Advertise)
	assert.Len(t, cfg.Listen, 2)
}

// Every README line running the proxy parses (flags valid, files named
// there replaced by real ones) and names a command the CLI knows.
func TestReadmeCommandLinesParse(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600))
	}
	lines := readmeCommands(t, "go run ./examples/proxy")
	require.Greater(t, len(lines), 10)
	for _, words := range lines {
		args := make([]string, 0, len(words)-3)
		for _, a := range words[3:] {
			a = strings.ReplaceAll(a, "/tmp/proxy-demo", dir)
			if a == "cert.pem" || a == "key.pem" {
				a = filepath.Join(dir, a)
			}
			args = append(args, a)
		}
		_, cmd, err := parseConfig(args)
		if len(args) == 1 && args[0] == "-h" {
			assert.ErrorIs(t, err, flag.ErrHelp)
			continue
		}
		require.NoError(t, err, "README line %v", words)
		if len(cmd) > 0 {
			require.GreaterOrEqual(t, len(cmd), 2, "README line %v", words)
			_, known := cliCommands[cmd[0]+" "+cmd[1]]
			assert.True(t, known, "README line %v", words)
		}
	}
}
