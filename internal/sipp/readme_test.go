package sipp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

func writeReadme(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

// Only lines in fenced code blocks count; prompts and a trailing & go;
// quotes are honoured.
func TestReadmeCommandsExtractsCodeBlockLines(t *testing.T) {
	p := writeReadme(t, "Run `sipp -sn uac` like this:\n\nsipp outside a block\n"+
		"```sh\ngo run ./examples/lcr -listen udp:127.0.0.1:5060\n"+
		"$ sipp -sf 'my dir/uas.xml' -i 127.0.0.1 -p 5080 &\n"+
		"sipp -sf uac.xml -s \"+1555\" 127.0.0.1:5060 -m 1\n```\n")
	cmds := ReadmeCommands(t, p)
	require.Len(t, cmds, 2)
	require.Equal(t, []string{"-sf", "my dir/uas.xml", "-i", "127.0.0.1", "-p", "5080"}, cmds[0].Args)
	require.Equal(t, "README.md:6", cmds[0].Source)
	require.Equal(t, []string{"-sf", "uac.xml", "-s", "+1555", "127.0.0.1:5060", "-m", "1"}, cmds[1].Args)
	require.Equal(t, "5080", cmds[0].Flag("-p"))

	gorun := ReadmeLines(t, p, "go")
	require.Len(t, gorun, 1)
	require.Equal(t, []string{"run", "./examples/lcr", "-listen", "udp:127.0.0.1:5060"}, gorun[0].Args)
}

// A line that needs a shell to mean what it says is refused, not run
// differently from what the README shows.
func TestSplitWordsRefusesShellSyntax(t *testing.T) {
	for _, line := range []string{
		"sipp -s $USER 127.0.0.1:5060",
		"sipp -sn uac 127.0.0.1:5060 | tee log",
		"sipp -sn uac 127.0.0.1:5060 && echo ok",
		"sipp -s \"$(whoami)\" x",
		"sipp -s 'unterminated",
	} {
		_, err := splitWords(line)
		require.Error(t, err, line)
	}
	w, err := splitWords(`sipp a\ b 'c d' "e"`)
	require.NoError(t, err)
	require.Equal(t, []string{"sipp", "a b", "c d", "e"}, w)
}

// MapPorts replaces the README's ports wherever they appear as ":P" or as
// the value of -p, and nothing else.
func TestMapPorts(t *testing.T) {
	c := Command{Program: "sipp", Args: []string{"-p", "5080", "-i", "127.0.0.1", "127.0.0.1:5060",
		"-backends", "127.0.0.1:5070,127.0.0.1:5071", "-api", "http://127.0.0.1:8080/route", "-m", "5060"}}
	m := c.MapPorts(map[int]int{5060: 40000, 5080: 40001, 5070: 40002, 5071: 40003, 8080: 40004})
	require.Equal(t, []string{"-p", "40001", "-i", "127.0.0.1", "127.0.0.1:40000",
		"-backends", "127.0.0.1:40002,127.0.0.1:40003", "-api", "http://127.0.0.1:40004/route", "-m", "5060"}, m.Args)
	require.Equal(t, "5080", c.Args[1], "the original is not changed")
}

// A README without any sipp line is a test failure, not a silent pass.
func TestReadmeCommandsNoneFails(t *testing.T) {
	p := writeReadme(t, "```sh\ngo run .\n```\n")
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		ReadmeCommands(ft, p)
	}()
	require.True(t, ft.failed)
}

// fakeTB records Fatalf instead of failing the real test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}

// README lines run as written (ports mapped): a SIPp UAS in the background
// and a UAC against it.
func TestRunReadmeCommands(t *testing.T) {
	Path(t)
	p := writeReadme(t, "```sh\nsipp -sn uas -i 127.0.0.1 -p 5080 -m 2 &\nsipp -sn uac -i 127.0.0.1 -s bob 127.0.0.1:5080 -m 2 -r 20\n```\n")
	cmds := ReadmeCommands(t, p)
	require.Len(t, cmds, 2)
	ports := map[int]int{5080: freePort(t)}
	uas := StartCommand(t, cmds[0].MapPorts(ports), t.TempDir(), 30*time.Second)
	res := RunCommand(t, cmds[1].MapPorts(ports), t.TempDir(), 30*time.Second)
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, 2, res.Successful, res.String())
	ur := uas.Wait(10 * time.Second)
	require.Equal(t, 0, ur.ExitCode, ur.String())
}

func freePort(t *testing.T) int { return testenv.FreeUDPPort(t) }
