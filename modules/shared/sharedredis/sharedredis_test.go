package sharedredis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/modules/shared/sharedredis"
	"github.com/asyncsip/asyncsip/modules/shared/sharedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	runID = func() string {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	seq      atomic.Int64
	mu       sync.Mutex
	prefixes = map[*testing.T]string{}
	clients  = map[*testing.T]*redis.Client{}
)

// env returns the Redis client and key prefix of test t, the same for
// every call within t (its instances share them) and new for each run.
func env(t *testing.T) (*redis.Client, string) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if c := clients[t]; c != nil {
		return c, prefixes[t]
	}
	addr := testenv.Redis(t)
	c, err := redis.Open("redis://" + addr)
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	p := "asyncsip-test:" + runID + ":" + time.Now().Format("150405") + ":" + itoa(seq.Add(1)) + ":"
	clients[t], prefixes[t] = c, p
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
		mu.Lock()
		delete(clients, t)
		delete(prefixes, t)
		mu.Unlock()
	})
	return c, p
}

func itoa(n int64) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}

func store(t *testing.T, instance string, ttl time.Duration) *sharedredis.Store {
	c, p := env(t)
	if ttl <= 0 {
		ttl = time.Minute
	}
	return sharedredis.New(c, sharedredis.Options{Prefix: p, Instance: instance, TTL: ttl})
}

func TestCounter(t *testing.T) {
	sharedtest.Counter(t, func(t *testing.T, instance string, ttl time.Duration) shared.Counter {
		return store(t, instance, ttl).Counter()
	})
}

func TestRates(t *testing.T) {
	sharedtest.Rates(t, func(t *testing.T) shared.Rates { return store(t, "x", 0).Rates() })
}

func TestNonces(t *testing.T) {
	sharedtest.Nonces(t, func(t *testing.T) shared.Nonces { return store(t, "x", 0).Nonces() })
}

func TestBoard(t *testing.T) {
	sharedtest.Board(t, func(t *testing.T) shared.Board { return store(t, "x", 0).Board() })
}

func TestLocation(t *testing.T) {
	sharedtest.Location(t, func(t *testing.T) shared.Location { return store(t, "x", 0).Location() })
}
