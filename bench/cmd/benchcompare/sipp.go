package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// UAC describes one SIPp caller run: Calls calls at Rate calls/s to Remote.
type UAC struct {
	Scenario  string // uac.xml
	Remote    string // host:port of the proxy (or the UAS)
	LocalPort int
	Rate      float64
	Calls     int
	CPU       int    // taskset CPU
	Dir       string // where its files go
	Timeout   time.Duration
	Buffer    int // -buff_size when > 0
}

// RunUAC runs SIPp as the caller and reads its statistics, error log and
// per-call INVITE->200 times.
func RunUAC(ctx context.Context, u UAC) Step {
	st := Step{Rate: u.Rate, Calls: u.Calls}
	if err := os.MkdirAll(u.Dir, 0o755); err != nil {
		st.Err = err.Error()
		return st
	}
	stat, errs, rtt := filepath.Join(u.Dir, "stat.csv"), filepath.Join(u.Dir, "errors.log"), filepath.Join(u.Dir, "rtt.log")
	limit := int(math.Max(1000, u.Rate*40)) // simultaneous calls: room for 40 s of retransmitting calls
	args := []string{"-c", strconv.Itoa(u.CPU), "sipp", "-sf", u.Scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(u.LocalPort),
		"-nostdin", "-r", strconv.FormatFloat(u.Rate, 'f', -1, 64), "-rp", "1000", "-m", strconv.Itoa(u.Calls),
		"-l", strconv.Itoa(limit), "-s", "bob", "-recv_timeout", "5000", "-default_behaviors", "all,-abortunexp",
		"-max_socket", "64", "-trace_stat", "-stf", stat, "-fd", "1", "-trace_err", "-error_file", errs,
		"-trace_logs", "-log_file", rtt}
	if u.Buffer > 0 {
		args = append(args, "-buff_size", strconv.Itoa(u.Buffer))
	}
	args = append(args, u.Remote)
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	st.Wall = time.Since(start).Seconds()
	_ = os.WriteFile(filepath.Join(u.Dir, "sipp.out"), out.Bytes(), 0o644)
	if ps := cmd.ProcessState; ps != nil {
		st.SIPpCPU = (ps.UserTime() + ps.SystemTime()).Seconds() // the callee's share is added by the caller
	}
	if ctx.Err() != nil {
		st.Err = fmt.Sprintf("sipp killed after %v", u.Timeout)
	} else if err != nil && cmd.ProcessState != nil && cmd.ProcessState.ExitCode() > 1 {
		// Exit 1 means "some calls failed", which the statistics tell.
		st.Err = fmt.Sprintf("sipp: %v", err)
	}
	cnt, perr := readStatFile(stat)
	if perr != nil && st.Err == "" {
		st.Err = perr.Error()
	}
	st.Successful, st.Failed, st.Retrans = cnt["SuccessfulCall(C)"], cnt["FailedCall(C)"], cnt["Retransmissions(C)"]
	st.Stray = countStray(errs)
	if lat, err := readRTT(rtt); err == nil && len(lat) > 0 {
		st.P50ms, st.P99ms = percentile(lat, 0.50), percentile(lat, 0.99)
	}
	return st
}

// readStatFile returns the integer columns of the last line of a SIPp
// -trace_stat file by column name.
func readStatFile(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sipp statistics: %w", err)
	}
	defer f.Close()
	var header, last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), ";")
		if header == nil {
			header = cols
		} else if len(cols) > 1 {
			last = cols
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sipp statistics: %w", err)
	}
	if header == nil || last == nil {
		return nil, fmt.Errorf("sipp statistics: %s: no data", path)
	}
	out := map[string]int{}
	for i, h := range header {
		if i < len(last) {
			if n, err := strconv.Atoi(strings.TrimSpace(last[i])); err == nil {
				out[h] = n
			}
		}
	}
	return out, nil
}

// countStray counts the messages SIPp ignored because they came out of
// order (-default_behaviors -abortunexp logs each one).
func countStray(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("Continuing call on unexpected message"))
}

// readRTT reads the "rtt s0 us0 s1 us1" lines logged by uac.xml and returns
// the INVITE->200 times in milliseconds.
func readRTT(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Fields(sc.Text())
		if len(p) != 5 || p[0] != "rtt" {
			continue
		}
		var v [4]float64
		ok := true
		for i := range v {
			x, err := strconv.ParseFloat(p[i+1], 64)
			if err != nil {
				ok = false
				break
			}
			v[i] = x
		}
		if !ok {
			continue
		}
		ms := (v[2]-v[0])*1e3 + (v[3]-v[1])/1e3
		if ms >= 0 {
			out = append(out, ms)
		}
	}
	return out, sc.Err()
}

// percentile returns the p-quantile (nearest rank) of v; v is sorted in place.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	i := int(math.Ceil(p*float64(len(v)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(v) {
		i = len(v) - 1
	}
	return v[i]
}
