package redis_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
)

// Sentinel, three local processes (a master, its replica, one sentinel):
// the client finds the master through the sentinel, and after a failover
// (SENTINEL FAILOVER) its writes reach the new master, on the same client.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	master := testenv.StartRedis(t)
	replica := testenv.StartRedis(t, "--replicaof", strings.Replace(master.Addr(), ":", " ", 1))
	testenv.Eventually(t, 20*time.Second, "replica linked", func() bool {
		line, err := testenv.RedisCommand(master.Addr(), "WAIT", "1", "100")
		return err == nil && line == ":1"
	})
	sentinel := testenv.StartSentinel(t, "mymaster", master.Addr())
	testenv.Eventually(t, 20*time.Second, "sentinel knows the replica", func() bool {
		line, err := testenv.RedisCommand(sentinel.Addr(), "SENTINEL", "REPLICAS", "mymaster")
		return err == nil && line == "*1"
	})

	c := open(t, "redis://"+sentinel.Addr()+"/0?master_set=mymaster",
		redis.RetryInterval(50*time.Millisecond), redis.Timeout(time.Second))
	l := testenv.StartLoop(t)
	must(t, l, c.Set("before", "1", 0))
	if line, err := testenv.RedisCommand(master.Addr(), "EXISTS", "before"); err != nil || line != ":1" {
		t.Fatalf("the write did not reach the master: %q %v", line, err)
	}
	// Replication is asynchronous: a failover may lose what the replica
	// has not received yet, so wait until it has.
	testenv.Eventually(t, 20*time.Second, "the write replicated", func() bool {
		line, err := testenv.RedisCommand(replica.Addr(), "EXISTS", "before")
		return err == nil && line == ":1"
	})

	testenv.Eventually(t, 20*time.Second, "failover accepted", func() bool {
		_, err := testenv.RedisCommand(sentinel.Addr(), "SENTINEL", "FAILOVER", "mymaster")
		return err == nil
	})
	testenv.Eventually(t, 30*time.Second, "the replica is the master", func() bool {
		line, err := testenv.RedisCommand(replica.Addr(), "ROLE")
		return err == nil && line == "*3" // a master's ROLE has 3 elements, a replica's 5
	})
	i := 0
	testenv.Eventually(t, 30*time.Second, "writes reach the new master", func() bool {
		i++
		k := "after" + strconv.Itoa(i)
		if run(t, l, c.Set(k, "1", 0)).err != nil {
			return false
		}
		line, err := testenv.RedisCommand(replica.Addr(), "EXISTS", k)
		return err == nil && line == ":1"
	})
	if v := must(t, l, c.Get("before")); v != "1" {
		t.Fatalf("GET before = %q", v)
	}
}
