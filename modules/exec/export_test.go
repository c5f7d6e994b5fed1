package exec

// NewFallbackRunner returns a Runner forced onto the goroutine fallback, as
// on a kernel without pidfds.
func NewFallbackRunner(cfg Config) *Runner {
	cfg.noPidfd = true
	return NewRunner(cfg)
}
