package tm

import "github.com/asyncsip/asyncsip/async"

// Interceptor returns Config.Intercept, making Context an
// async.InterceptedSuspender: with a non-nil Intercept (siptest) every
// async.Await on the context is offered to it first.
func (c *Context) Interceptor() async.Interceptor { return c.s.cfg.Intercept }
