package dispatcher

import (
	"encoding/json"
	"fmt"
	"io"
)

// LoadSets reads destination sets from JSON, as an operator's file or a
// REST body gives them, refusing unknown fields:
//
//	[{"id": "gw", "algorithm": "weighted", "targets": [
//	   {"uri": "sip:10.0.0.1:5060", "weight": 2, "attrs": {"trunk": "a"}},
//	   {"uri": "sip:10.0.0.2:5060", "weight": 1}]}]
//
// Give the result to New (Config.Sets) or Replace, which validate the
// targets.
func LoadSets(r io.Reader) ([]SetConfig, error) {
	dec := json.NewDecoder(io.LimitReader(r, 16<<20))
	dec.DisallowUnknownFields()
	var sets []SetConfig
	if err := dec.Decode(&sets); err != nil {
		return nil, fmt.Errorf("dispatcher: sets: %w", err)
	}
	return sets, nil
}
