package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Row is the result of one proxy in one scenario.
type Row struct {
	Proxy     string  `json:"proxy"`
	Scenario  string  `json:"scenario"`
	MaxCPS    float64 `json:"max_cps"`   // highest rate with no failed call (0: none)
	Confirmed bool    `json:"confirmed"` // the max passed a second time
	Search    []Step  `json:"search"`
	Fixed     *Step   `json:"fixed,omitempty"` // the CPU and latency run
	// CPUPer1k is the proxy's CPU seconds per 1,000 calls in the fixed run
	// (NaN-free: 0 when not measured).
	CPUPer1k float64 `json:"cpu_s_per_1k"`
	// Syscalls is the syscall pass (relay only), after the timed runs.
	Syscalls *SyscallCount `json:"syscalls,omitempty"`
}

// Missing records a proxy × scenario that could not be measured.
type Missing struct {
	Proxy, Scenario, Reason string
}

// Profile holds the top of a CPU profile of the asyncsip proxy.
type Profile struct {
	Scenario string  `json:"scenario"`
	Rate     float64 `json:"rate"`
	Top      string  `json:"top"`
	File     string  `json:"file"`
}

// Results is everything one run produced (saved as results.json).
type Results struct {
	Date     string            `json:"date"`
	Machine  map[string]string `json:"machine"`
	Versions map[string]string `json:"versions"`
	Settings map[string]string `json:"settings"`
	Note     string            `json:"note,omitempty"`
	Rows     []Row             `json:"rows"`
	Missing  []Missing         `json:"missing,omitempty"`
	Profiles []Profile         `json:"profiles,omitempty"`
}

// env is what the blocks of a run share.
type env struct {
	o       Options
	bin     string // built Go binaries
	work    string
	httpMod string // http_async_client.so, "" when it could not be built
	httpErr string // why not
	dbPath  string
	res     *Results
}

func runAll(ctx context.Context, o Options) (*Results, error) {
	if o.WaitLoad > 0 {
		waitQuiet(ctx, o.WaitLoad, o.WaitMax)
	}
	e := &env{o: o, res: &Results{Note: o.Note}}
	var err error
	if e.work = o.Work; e.work == "" {
		if e.work, err = os.MkdirTemp("", "asyncsip-bench-"); err != nil {
			return nil, err
		}
	}
	logf("work directory %s", e.work)
	if err := setup(ctx, e); err != nil {
		return nil, err
	}
	e.res.Date = time.Now().UTC().Format("2006-01-02 15:04 MST")
	e.res.Machine = machineInfo()
	e.res.Versions = versions(e.o.Repo, e.httpMod)
	if o.Version != "" {
		e.res.Versions["asyncsip"] = o.Version
	}
	e.res.Settings = map[string]string{
		"step": o.Step.String(), "fixed rate": fmt.Sprintf("%.0f calls/s", o.FixedRate),
		"fixed duration": o.FixedDuration.String(), "precision": fmt.Sprint(o.Search.Precision),
		"proxy cpu": strconv.Itoa(o.ProxyCPU), "sipp cpu": strconv.Itoa(o.SIPpCPU),
		"ports":         fmt.Sprintf("proxy udp %d, callee udp %d, caller udp %d, http %d", o.Port, o.UASPort, o.UACPort, o.HTTPPort),
		"sipp buffer":   strconv.Itoa(o.SIPpBuffer) + " (0: SIPp's default)",
		"load at start": loadAvg(),
	}
	for i, sc := range o.Scenarios {
		order := rotate(o.Proxies, i)
		for _, p := range order {
			if !proxyKinds[p].supports(sc) {
				continue
			}
			if ctx.Err() != nil {
				return e.res, ctx.Err()
			}
			row, err := runBlock(ctx, e, p, sc)
			if err != nil {
				logf("%s/%s: %v", p, sc, err)
				e.res.Missing = append(e.res.Missing, Missing{p, sc, err.Error()})
				continue
			}
			e.res.Rows = append(e.res.Rows, row)
			_ = saveResults(filepath.Join(e.work, "results.partial.json"), e.res)
		}
	}
	if o.Profile && ctx.Err() == nil {
		for _, sc := range o.Scenarios {
			if pr, err := profileBlock(ctx, e, sc); err != nil {
				logf("profile %s: %v", sc, err)
			} else {
				e.res.Profiles = append(e.res.Profiles, pr)
			}
		}
	}
	e.res.Settings["load at end"] = loadAvg()
	return e.res, ctx.Err()
}

func rotate(s []string, k int) []string {
	out := make([]string, 0, len(s))
	for i := range s {
		out = append(out, s[(i+k)%len(s)])
	}
	return out
}

// block holds the processes of one proxy × scenario measurement.
type block struct {
	e     *env
	name  string
	dir   string
	procs []*Proc
	proxy *Proc
	uas   *Proc
	n     int
}

func (b *block) stop() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].Stop(5 * time.Second)
	}
}

// start starts a peer (or the proxy) and waits for its port.
func (b *block) start(name string, cpu int, ready func() bool, env []string, argv ...string) (*Proc, error) {
	p, err := StartProc(name, cpu, filepath.Join(b.dir, name+".log"), env, argv...)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	if !waitFor(15*time.Second, func() bool { return p.Exited() || ready() }) || p.Exited() {
		return nil, fmt.Errorf("%s did not come up: %s", name, tailFile(filepath.Join(b.dir, name+".log"), 600))
	}
	return p, nil
}

// uac runs SIPp as the caller at rate for d and measures the proxy's CPU.
func (b *block) uac(ctx context.Context, rate float64, d time.Duration) Step {
	b.n++
	o := b.e.o
	remote := fmt.Sprintf("127.0.0.1:%d", o.Port)
	if b.proxy == nil {
		remote = fmt.Sprintf("127.0.0.1:%d", o.UASPort)
	}
	calls := int(math.Max(1, math.Round(rate*d.Seconds())))
	var before, uasBefore int64
	if b.proxy != nil {
		before, _ = CPUTicks(b.proxy.PID())
	}
	if b.uas != nil {
		uasBefore, _ = CPUTicks(b.uas.PID())
	}
	st := RunUAC(ctx, UAC{
		Scenario: filepath.Join(o.Repo, "bench", "sipp", "uac.xml"), Remote: remote, LocalPort: o.UACPort,
		Rate: rate, Calls: calls, CPU: o.SIPpCPU, Dir: filepath.Join(b.dir, fmt.Sprintf("run%02d-%.0f", b.n, rate)),
		Timeout: d + 60*time.Second, Buffer: o.SIPpBuffer,
	})
	if b.proxy != nil {
		after, err := CPUTicks(b.proxy.PID())
		if err != nil {
			st.Err = "proxy exited: " + tailFile(filepath.Join(b.dir, b.proxy.Name+".log"), 400)
		}
		st.CPUSeconds = float64(after-before) / clockTicks
	}
	if b.uas != nil {
		if after, err := CPUTicks(b.uas.PID()); err == nil {
			st.SIPpCPU += float64(after-uasBefore) / clockTicks
		}
	}
	if st.Wall > 0 {
		st.SIPpCPU /= st.Wall
	}
	// SIPp sends for d; allow it 10 % (and 2 s) more before calling it late.
	st.Late = st.Wall > d.Seconds()*1.1+2
	logf("  %s %s %s", b.name, b.dirName(), st)
	// Let the last calls end; after an overload, let the backlog drain too.
	pause := time.Second
	if !st.OK() {
		pause = 6 * time.Second
	}
	select {
	case <-ctx.Done():
	case <-time.After(pause):
	}
	return st
}

func (b *block) dirName() string { return filepath.Base(b.dir) }

func runBlock(ctx context.Context, e *env, proxy, scenario string) (Row, error) {
	row := Row{Proxy: proxy, Scenario: scenario}
	b := &block{e: e, name: proxy + "/" + scenario, dir: filepath.Join(e.work, proxy+"-"+scenario)}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return row, err
	}
	defer b.stop()
	logf("%s: starting", b.name)
	if err := b.up(proxy, scenario); err != nil {
		return row, err
	}
	// measure runs one step; after a failed step everything is restarted so
	// that the backlog of an overload cannot spill into the next step.
	var upErr error
	measure := func(rate float64, d time.Duration) Step {
		if upErr != nil {
			return Step{Rate: rate, Err: upErr.Error()}
		}
		st := b.uac(ctx, rate, d)
		if !st.OK() && ctx.Err() == nil {
			b.stop()
			upErr = b.up(proxy, scenario)
		}
		return st
	}
	fixed := measure(e.o.FixedRate, e.o.FixedDuration)
	sc := e.o.Search
	best, confirmed, steps := sc.Run(func(rate float64) Step {
		if ctx.Err() != nil {
			return Step{Rate: rate, Err: "interrupted"}
		}
		if rate == e.o.FixedRate && e.o.FixedDuration >= e.o.Step {
			return fixed // the fixed-rate run is a search step too
		}
		return measure(rate, e.o.Step)
	})
	row.MaxCPS, row.Confirmed, row.Search = best, confirmed, steps
	if !fixed.OK() && best > 0 && ctx.Err() == nil {
		// Over capacity at the fixed rate: measure CPU and latency at the max.
		fixed = measure(best, e.o.FixedDuration)
	}
	row.Fixed = &fixed
	if b.proxy != nil && fixed.Successful > 0 {
		row.CPUPer1k = fixed.CPUSeconds / float64(fixed.Successful) * 1000
	}
	if scenario == "relay" && b.proxy != nil && e.o.SyscallTool != toolOff && upErr == nil && ctx.Err() == nil {
		// Separate from the timed runs: the counter slows the proxy.
		row.Syscalls = b.syscallPass(ctx, fixed.Rate, e.o.SyscallDuration)
	}
	logf("%s: max %.0f cps (confirmed %v), fixed %s, %.3f CPU s / 1k calls", b.name, best, confirmed, fixed, row.CPUPer1k)
	if ctx.Err() != nil {
		return row, ctx.Err()
	}
	if upErr != nil {
		return row, upErr
	}
	return row, nil
}

// up starts the peers and the proxy, then warms them up with a short run.
func (b *block) up(proxy, scenario string) error {
	e := b.e
	b.procs, b.proxy, b.uas = nil, nil, nil
	if err := startPeers(e, b, scenario); err != nil {
		return err
	}
	if kind := proxyKinds[proxy]; kind.argv != nil {
		argv, env, err := kind.argv(e, scenario)
		if err != nil {
			return err
		}
		p, err := b.start(proxy, e.o.ProxyCPU, func() bool { return udpBound(e.o.Port) }, env, argv...)
		if err != nil {
			return err
		}
		b.proxy = p
	}
	b.uac(context.Background(), 100, 3*time.Second) // warm-up, not recorded
	return nil
}

// startPeers starts the SIPp callee, and the HTTP delay server or the
// routing database of the scenario, on the SIPp CPU.
func startPeers(e *env, b *block, scenario string) error {
	o := e.o
	for _, port := range []int{o.Port, o.UASPort, o.UACPort} {
		if !waitFor(10*time.Second, func() bool { return !udpBound(port) }) {
			return fmt.Errorf("UDP port %d is in use by another process", port)
		}
	}
	var err error
	if b.uas, err = b.start("uas", o.SIPpCPU, func() bool { return udpBound(o.UASPort) }, nil,
		"sipp", "-sf", filepath.Join(o.Repo, "bench", "sipp", "uas.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(o.UASPort), "-nostdin", "-max_socket", "64", "-l", "1000000",
		"-trace_err", "-error_file", filepath.Join(b.dir, "uas-errors.log"), "-buff_size", strconv.Itoa(sippBuffer(o))); err != nil {
		return err
	}
	switch scenario {
	case "rest":
		if tcpListening(o.HTTPPort) {
			return fmt.Errorf("TCP port %d is in use by another process", o.HTTPPort)
		}
		_, err := b.start("httpdelay", o.SIPpCPU, func() bool { return tcpListening(o.HTTPPort) }, nil,
			filepath.Join(e.bin, "httpdelay"), "-listen", fmt.Sprintf("127.0.0.1:%d", o.HTTPPort),
			"-delay", "20ms", "-target", fmt.Sprintf("127.0.0.1:%d", o.UASPort))
		return err
	case "db":
		return fillDB(e)
	}
	return nil
}

// sippBuffer is the callee's -buff_size: the flag's, else SIPp's default.
func sippBuffer(o Options) int {
	if o.SIPpBuffer > 0 {
		return o.SIPpBuffer
	}
	return 65535
}

// ErrUnsupported marks a proxy × scenario that is not part of the comparison.
var ErrUnsupported = errors.New("benchcompare: scenario not supported by this proxy")
