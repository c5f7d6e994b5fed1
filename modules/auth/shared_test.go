package auth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
)

// verifyOn runs VerifyShared on a manual loop; advance moves its clock
// when the op is still out (a Nonces that does not answer).
func verifyOn(t *testing.T, c *Challenger, a Attempt, advance time.Duration) (Result, error) {
	t.Helper()
	l := reactor.NewManual(nil)
	var got *struct {
		r   Result
		err error
	}
	async.Launch(l, c.VerifyShared(a, ha1(t, SHA256)), func(r Result, err error) {
		got = &struct {
			r   Result
			err error
		}{r, err}
	}, async.Timeout(time.Minute))
	l.RunPending()
	if got == nil && advance > 0 {
		l.Advance(advance)
	}
	require.NotNil(t, got, "VerifyShared did not complete")
	return got.r, got.err
}

// Two instances with the same secret and shared nonce-counts: a nonce one
// issued is good at the other, and a replay is refused at both.
func TestVerifySharedAcrossInstances(t *testing.T) {
	t.Parallel()
	nonces := shared.NewMemoryNonces(0)
	a, b := newFixture(t), newFixture(t)
	a.ch.Nonces, b.ch.Nonces = nonces, nonces

	att := attempt(t, a.offer(t, alice), "pw", 1, alice)
	_, err := verifyOn(t, b.ch, att, 0)
	require.NoError(t, err, "a nonce of instance a is accepted by b")
	for _, f := range []*fixture{a, b} {
		res, err := verifyOn(t, f.ch, att, 0)
		assert.ErrorIs(t, err, ErrReplay)
		assert.Equal(t, ChallengeStale, res.Action)
	}
	_, err = verifyOn(t, a.ch, attempt(t, a.offer(t, alice), "pw", 2, alice), 0)
	require.NoError(t, err)
	res, err := verifyOn(t, a.ch, attempt(t, a.offer(t, alice), "wrong", 1, alice), 0)
	assert.ErrorIs(t, err, ErrBadCredentials)
	assert.Equal(t, Refuse, res.Action)
}

// Without shared nonce-counts a nonce of another instance is stale.
func TestVerifySharedWithoutNoncesIsVerify(t *testing.T) {
	t.Parallel()
	a, b := newFixture(t), newFixture(t)
	att := attempt(t, a.offer(t, alice), "pw", 1, alice)
	_, err := verifyOn(t, b.ch, att, 0)
	assert.ErrorIs(t, err, ErrStaleNonce)
	_, err = verifyOn(t, a.ch, att, 0)
	assert.NoError(t, err)
}

// stuckNonces never answers: Redis hung.
type stuckNonces struct{}

func (stuckNonces) Use(string, uint32, time.Duration) async.Op[bool] {
	return async.OpFunc[bool](func(*reactor.Loop, func(bool, error)) func() { return nil })
}

// When the shared store does not answer within NoncesTimeout, the local
// table decides: this instance's nonces still work and their replays are
// refused; another instance's nonce is stale (one more challenge).
func TestVerifySharedStoreDownFallsBackToLocal(t *testing.T) {
	t.Parallel()
	a, b := newFixture(t), newFixture(t)
	a.ch.Nonces, b.ch.Nonces = stuckNonces{}, stuckNonces{}
	own := attempt(t, a.offer(t, alice), "pw", 1, alice)
	_, err := verifyOn(t, a.ch, own, DefaultNoncesTimeout)
	require.NoError(t, err)
	_, err = verifyOn(t, a.ch, own, DefaultNoncesTimeout)
	assert.ErrorIs(t, err, ErrReplay)
	res, err := verifyOn(t, b.ch, attempt(t, a.offer(t, alice), "pw", 1, alice), DefaultNoncesTimeout)
	assert.ErrorIs(t, err, ErrStaleNonce)
	assert.Equal(t, ChallengeStale, res.Action)
	assert.Contains(t, a.log.String(), "shared nonce-counts failed")
}

// A count used during an outage (recorded locally only) is still refused
// when the shared store is back and has not seen it.
func TestVerifySharedRemembersOutageCounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.offer(t, alice)
	f.ch.Nonces = stuckNonces{}
	_, err := verifyOn(t, f.ch, attempt(t, o, "pw", 3, alice), DefaultNoncesTimeout)
	require.NoError(t, err)
	f.ch.Nonces = shared.NewMemoryNonces(0) // back, and empty
	_, err = verifyOn(t, f.ch, attempt(t, o, "pw", 2, alice), 0)
	assert.ErrorIs(t, err, ErrReplay)
}
