package auth

import (
	"bytes"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/ratelimit"
)

// Test vectors from RFC 7616 §3.9.1 (HTTP digest; the SIP computation is the
// same with the SIP method and Request-URI).
func TestResponseRFC7616Vectors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		alg  Algorithm
		want string
	}{
		{MD5, "8ca523f5e9506fed4657c9700eebdbec"},
		{SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tc := range cases {
		t.Run(string(tc.alg), func(t *testing.T) {
			ha1, err := HA1(tc.alg, "Mufasa", "http-auth@example.org", "Circle of Life")
			require.NoError(t, err)
			got, err := Response(Credentials{Algorithm: tc.alg, Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				URI: "/dir/index.html", QOP: "auth", NC: "00000001", CNonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"}, "GET", ha1)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// fakeClock is a settable clock shared by a Challenger and its Failures.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a Challenger on a fake clock with a captured log, and one
// user, alice, whose password is "pw".
type fixture struct {
	ch    *Challenger
	clock *fakeClock
	log   *syncBuffer
}

const (
	realm = "example.com"
	ruri  = "sip:example.com"
)

var (
	alice   = netip.MustParseAddr("192.0.2.10")
	mallory = netip.MustParseAddr("198.51.100.66")
)

func newFixture(t *testing.T, opts ...func(*Challenger, *ratelimit.FailureConfig)) *fixture {
	t.Helper()
	f := &fixture{clock: &fakeClock{now: time.Unix(1_800_000_000, 0)}, log: &syncBuffer{}}
	f.ch = NewChallenger(realm, []byte("0123456789abcdef0123456789abcdef"))
	f.ch.Now = f.clock.Now
	f.ch.Logger = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fc := ratelimit.FailureConfig{SourceLimit: 5, UserLimit: 8, Window: time.Minute, BanFor: time.Minute,
		MaxBan: 10 * time.Minute, Now: f.clock.Now}
	for _, o := range opts {
		o(f.ch, &fc)
	}
	f.ch.Failures = ratelimit.NewFailures(fc)
	return f
}

// offer challenges src and parses the first (preferred) challenge.
func (f *fixture) offer(t *testing.T, src netip.Addr) Offer {
	t.Helper()
	hs := f.ch.Challenge(src, false, false)
	require.NotEmpty(t, hs)
	o, err := ParseChallenge(hs[0].Value())
	require.NoError(t, err)
	return o
}

// attempt answers o as alice (password pw) with nc, sent from src.
func attempt(t *testing.T, o Offer, password string, nc uint32, src netip.Addr) Attempt {
	t.Helper()
	cred, err := o.Answer("alice", password, "REGISTER", ruri, nc, "c0ffee")
	require.NoError(t, err)
	return Attempt{Credentials: cred, Method: "REGISTER", RequestURI: ruri, Source: src}
}

func ha1(t *testing.T, alg Algorithm) string {
	t.Helper()
	h, err := HA1(alg, "alice", realm, "pw")
	require.NoError(t, err)
	return h
}

func TestChallengeOffersPreferredFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hs := f.ch.Challenge(alice, true, true)
	require.Len(t, hs, 2)
	assert.Equal(t, "Proxy-Authenticate", hs[0].Name())
	first, err := ParseChallenge(hs[0].Value())
	require.NoError(t, err)
	second, err := ParseChallenge(hs[1].Value())
	require.NoError(t, err)
	assert.Equal(t, SHA256, first.Algorithm)
	assert.Equal(t, MD5, second.Algorithm)
	assert.Equal(t, first.Nonce, second.Nonce, "one nonce for both algorithms")
	assert.True(t, first.Stale)
	assert.Equal(t, []string{"auth"}, first.QOP)
	assert.NotEqual(t, first.Nonce, f.offer(t, alice).Nonce, "every challenge has a fresh nonce")
}

func TestVerifyAcceptsEachAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{SHA256, MD5} {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			o := f.offer(t, alice)
			o.Algorithm = alg
			res, err := f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, alg))
			require.NoError(t, err)
			assert.Equal(t, Accept, res.Action)
			assert.Equal(t, "alice", res.Username)
			assert.Empty(t, f.log.String(), "a success is not a security event")
		})
	}
}

// Row 8 of issue 18: the exact header sent again (from anywhere) is refused.
func TestReplayOfExactHeaderRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := attempt(t, f.offer(t, alice), "pw", 1, alice)
	_, err := f.ch.Verify(a, ha1(t, SHA256))
	require.NoError(t, err)

	sniffed, err := Parse(a.Credentials.String())
	require.NoError(t, err)
	replay := Attempt{Credentials: sniffed, Method: "REGISTER", RequestURI: ruri, Source: mallory}
	res, err := f.ch.Verify(replay, ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrReplay)
	assert.Equal(t, ChallengeStale, res.Action, "a fresh nonce is all a real client needs; a replayer cannot use it")
	assert.Contains(t, f.log.String(), "source=198.51.100.66")
	assert.Contains(t, f.log.String(), "nonce-count replayed")

	res, err = f.ch.Check(replay)
	assert.ErrorIs(t, err, ErrReplay, "Check refuses a replay before the user lookup")
	assert.Equal(t, ChallengeStale, res.Action)
}

func TestNonceCountMustIncrease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.offer(t, alice)
	steps := []struct {
		nc   uint32
		want error
	}{{1, nil}, {2, nil}, {5, nil}, {5, ErrReplay}, {3, ErrReplay}, {6, nil}}
	for _, s := range steps {
		_, err := f.ch.Verify(attempt(t, o, "pw", s.nc, alice), ha1(t, SHA256))
		if s.want == nil {
			assert.NoError(t, err, "nc %d", s.nc)
		} else {
			assert.ErrorIs(t, err, s.want, "nc %d", s.nc)
		}
	}
}

func TestNonceCountFormat(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.offer(t, alice)
	for _, nc := range []string{"0", "00000000", "1", "0000000g", "000000001"} {
		a := attempt(t, o, "pw", 1, alice)
		a.NC = nc
		_, err := f.ch.Verify(a, ha1(t, SHA256))
		assert.ErrorIs(t, err, ErrMalformed, "nc %q", nc)
	}
}

func TestURIMustMatchRequestURI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := attempt(t, f.offer(t, alice), "pw", 1, alice)
	a.RequestURI = "sip:bob@example.com"
	res, err := f.ch.Verify(a, ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrURIMismatch)
	assert.Equal(t, Refuse, res.Action)

	a.RequestURI = "sip:EXAMPLE.com;lr" // same resource by RFC 3261 §19.1.4
	_, err = f.ch.Verify(a, ha1(t, SHA256))
	assert.NoError(t, err)
}

func TestSameURI(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		same bool
	}{
		{"sip:alice@example.com", "sip:alice@example.com", true},
		{"sip:alice@EXAMPLE.com", "SIP:alice@example.com", true},
		{"sip:%61lice@example.com", "sip:alice@example.com", true},
		{"sip:alice@example.com;foo=1", "sip:alice@example.com", true},
		{"sip:alice@example.com;transport=TCP", "sip:alice@example.com;transport=tcp", true},
		{"sip:alice@example.com;transport=udp", "sip:alice@example.com", false},
		{"sip:alice@example.com;foo=1", "sip:alice@example.com;foo=2", false},
		{"sip:ALICE@example.com", "sip:alice@example.com", false},
		{"sip:alice@example.com:5060", "sip:alice@example.com", false},
		{"sips:alice@example.com", "sip:alice@example.com", false},
		{"sip:alice@example.com", "sip:bob@example.com", false},
		{"sip:alice@example.com?subject=x", "sip:alice@example.com", false},
		{"tel:+15551234", "tel:+15551234", true},
		{"tel:+15551234", "tel:+15551235", false},
		{"not a uri", "sip:alice@example.com", false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.same, SameURI(tc.a, tc.b), "%s vs %s", tc.a, tc.b)
		assert.Equal(t, tc.same, SameURI(tc.b, tc.a), "%s vs %s", tc.b, tc.a)
	}
}

func TestQopRequiredByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.offer(t, alice)
	o.QOP = nil // the RFC 2069 form
	res, err := f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrQopRequired)
	assert.Equal(t, Refuse, res.Action)

	o.QOP = []string{"auth"}
	a := attempt(t, o, "pw", 1, alice)
	a.QOP = "auth-int"
	_, err = f.ch.Verify(a, ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrQopRequired, "only qop=auth is offered")
}

func TestAllowNoQopNonceIsSingleUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(ch *Challenger, _ *ratelimit.FailureConfig) { ch.AllowNoQop = true })
	o := f.offer(t, alice)
	o.QOP = nil
	a := attempt(t, o, "pw", 0, alice)
	_, err := f.ch.Verify(a, ha1(t, SHA256))
	require.NoError(t, err)
	_, err = f.ch.Verify(a, ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrReplay)
}

func TestAlgorithmAndRealmChecked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(ch *Challenger, _ *ratelimit.FailureConfig) { ch.Algorithms = []Algorithm{SHA256} })
	o := f.offer(t, alice)
	o.Algorithm = MD5 // a downgrade to an algorithm we did not offer
	_, err := f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, MD5))
	assert.ErrorIs(t, err, ErrAlgorithm)

	o = f.offer(t, alice)
	o.Realm = "evil.example"
	_, err = f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrRealm)
}

func TestExpiredNonceIsStale(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.offer(t, alice)
	f.clock.Advance(DefaultNonceTTL - time.Second)
	_, err := f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, SHA256))
	require.NoError(t, err, "still valid just before NonceTTL")
	f.clock.Advance(2 * time.Second)
	res, err := f.ch.Verify(attempt(t, o, "pw", 2, alice), ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrStaleNonce)
	assert.True(t, res.Stale())
	assert.Zero(t, f.ch.Failures.Stats().Sources, "a stale nonce is not a failure")
}

func TestForgedNonceRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := NewChallenger(realm, []byte("another secret, another server!"))
	o := f.offer(t, alice)
	forged, err := ParseChallenge(other.Challenge(alice, false, false)[0].Value())
	require.NoError(t, err)
	o.Nonce = forged.Nonce
	res, err := f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrBadNonce)
	assert.Equal(t, Refuse, res.Action)

	o = f.offer(t, alice)
	b := []byte(o.Nonce)
	b[3] ^= 1 // tamper with the issue time
	o.Nonce = string(b)
	_, err = f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrBadNonce)
}

func TestBindSource(t *testing.T) {
	t.Parallel()
	t.Run("off", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.ch.Verify(attempt(t, f.offer(t, alice), "pw", 1, mallory), ha1(t, SHA256))
		assert.NoError(t, err, "by default a client may change address (NAT rebinding)")
	})
	t.Run("on", func(t *testing.T) {
		f := newFixture(t, func(ch *Challenger, _ *ratelimit.FailureConfig) { ch.BindSource = true })
		o := f.offer(t, alice)
		res, err := f.ch.Verify(attempt(t, o, "pw", 1, mallory), ha1(t, SHA256))
		assert.ErrorIs(t, err, ErrStaleNonce)
		assert.Equal(t, ChallengeStale, res.Action)
		assert.Contains(t, f.log.String(), "level=WARN", "a nonce used from elsewhere is a security event")
		_, err = f.ch.Verify(attempt(t, o, "pw", 1, alice), ha1(t, SHA256))
		assert.NoError(t, err, "from the address it was issued to")
	})
}

func TestUnknownUserCountsAsFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res, err := f.ch.Verify(attempt(t, f.offer(t, alice), "pw", 1, mallory), "")
	assert.ErrorIs(t, err, ErrUnknownUser)
	assert.Equal(t, Refuse, res.Action)
	assert.Equal(t, 1, f.ch.Failures.Stats().Sources)
}

// Row 7 of issue 18: a brute force is banned, even the right password is
// then dropped, and the ban ends on time with a back-off that grows.
func TestBruteForceBannedWithBackOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := ha1(t, SHA256)
	for i := range 4 {
		res, err := f.ch.Verify(attempt(t, f.offer(t, mallory), "guess", 1, mallory), good)
		require.ErrorIs(t, err, ErrBadCredentials, "attempt %d", i)
		assert.Equal(t, Refuse, res.Action)
	}
	res, err := f.ch.Verify(attempt(t, f.offer(t, mallory), "guess", 1, mallory), good)
	require.ErrorIs(t, err, ErrBadCredentials)
	assert.True(t, res.Ban.NewSource, "the 5th failure bans the source")
	assert.Contains(t, f.log.String(), `msg="auth: banned"`)
	assert.Contains(t, f.log.String(), "source=198.51.100.66 user=alice")

	res, err = f.ch.Verify(attempt(t, f.offer(t, mallory), "pw", 1, mallory), good)
	assert.ErrorIs(t, err, ErrBanned, "the right password is not even tried while banned")
	assert.Equal(t, Drop, res.Action)
	res, err = f.ch.Check(attempt(t, f.offer(t, mallory), "pw", 1, mallory))
	assert.ErrorIs(t, err, ErrBanned, "Check refuses before the user lookup")
	assert.Equal(t, Drop, res.Action)

	f.clock.Advance(time.Minute + time.Second)
	_, err = f.ch.Verify(attempt(t, f.offer(t, mallory), "pw", 1, mallory), good)
	require.NoError(t, err, "the first ban lasts BanFor")

	for range 5 {
		_, _ = f.ch.Verify(attempt(t, f.offer(t, mallory), "guess", 1, mallory), good)
	}
	f.clock.Advance(time.Minute + time.Second)
	_, err = f.ch.Verify(attempt(t, f.offer(t, mallory), "pw", 1, mallory), good)
	assert.ErrorIs(t, err, ErrBanned, "the second ban lasts twice as long")
	f.clock.Advance(time.Minute)
	_, err = f.ch.Verify(attempt(t, f.offer(t, mallory), "pw", 1, mallory), good)
	assert.NoError(t, err)
}

func TestDistributedBruteForceBansUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := ha1(t, SHA256)
	for i := range 8 { // 8 sources, one guess each: under SourceLimit, at UserLimit
		src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		_, err := f.ch.Verify(attempt(t, f.offer(t, src), "guess", 1, src), good)
		require.ErrorIs(t, err, ErrBadCredentials)
	}
	_, err := f.ch.Verify(attempt(t, f.offer(t, alice), "pw", 1, alice), good)
	assert.ErrorIs(t, err, ErrBanned, "the user is banned from every source")
}

func TestSuccessResetsUserCount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := ha1(t, SHA256)
	for round := range 3 { // 3 × 7 failures from 7 sources, each round ended by a success
		for i := range 7 {
			src := netip.AddrFrom4([4]byte{203, 0, 113, byte(10*round + i + 1)})
			_, err := f.ch.Verify(attempt(t, f.offer(t, src), "guess", 1, src), good)
			require.ErrorIs(t, err, ErrBadCredentials)
		}
		_, err := f.ch.Verify(attempt(t, f.offer(t, alice), "pw", 1, alice), good)
		require.NoError(t, err, "round %d: the success restarts alice's count", round)
	}
}

// The nonce table's cap holds under 100k distinct nonces: memory stays at
// MaxNonces slots, an evicted nonce is stale (never accepted), recent ones work.
func TestNonceCapHolds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(ch *Challenger, _ *ratelimit.FailureConfig) { ch.MaxNonces = 1024 })
	first := f.offer(t, alice)
	for range 100_000 {
		f.ch.issueNonce(mallory)
	}
	assert.Len(t, f.ch.table().slots, 1024)
	res, err := f.ch.Verify(attempt(t, first, "pw", 1, alice), ha1(t, SHA256))
	assert.ErrorIs(t, err, ErrStaleNonce, "evicted: re-challenged, never accepted")
	assert.Equal(t, ChallengeStale, res.Action)
	_, err = f.ch.Check(attempt(t, first, "pw", 1, alice))
	assert.ErrorIs(t, err, ErrStaleNonce, "Check sees the eviction too")
	_, err = f.ch.Verify(attempt(t, f.offer(t, alice), "pw", 1, alice), ha1(t, SHA256))
	assert.NoError(t, err)
}

func TestVerifyConcurrentSameNonceAcceptsEachCountOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := attempt(t, f.offer(t, alice), "pw", 1, alice)
	good := ha1(t, SHA256)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 16 {
		wg.Go(func() {
			if _, err := f.ch.Verify(a, good); err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, accepted)
}

func TestActionFor(t *testing.T) {
	t.Parallel()
	cases := map[error]Action{
		nil: Accept, ErrStaleNonce: ChallengeStale, ErrReplay: ChallengeStale, errOtherSource: ChallengeStale,
		ErrBanned: Drop, ErrBadCredentials: Refuse, ErrUnknownUser: Refuse, ErrURIMismatch: Refuse,
		ErrQopRequired: Refuse, ErrRealm: Refuse, ErrAlgorithm: Refuse, ErrBadNonce: Refuse, ErrMalformed: Refuse,
	}
	for err, want := range cases {
		assert.Equal(t, want, ActionFor(err), "%v", err)
	}
}
