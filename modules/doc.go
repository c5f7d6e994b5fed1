// Package modules holds no code: its folders are the modules of asyncsip,
// of two kinds. An op adapter (auth, db, exec, ratelimit, redis, rest,
// shared) turns a service or a computation into values and async ops that a
// route awaits, and does not import tm. A plug-in (dialog, dispatcher, dns,
// hep, metrics, nat, rtpengine) hooks into the transaction layer and imports
// tm. docs/ARCHITECTURE.md ("Two kinds of module") has the table, which
// TestModuleKinds keeps true.
package modules
