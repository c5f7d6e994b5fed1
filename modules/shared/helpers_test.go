package shared_test

import (
	"sync"
	"testing"

	"github.com/asyncsip/asyncsip/modules/shared"
)

var counters = struct {
	mu sync.Mutex
	m  map[*testing.T]*shared.MemoryCounter
}{m: map[*testing.T]*shared.MemoryCounter{}}
