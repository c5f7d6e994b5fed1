// Package sipdns is the RFC 3263 resolver (NAPTR → SRV → A/AAAA) with its
// cache, as async ops. modules/dns is its public face (with the failover
// helpers); it lives here so that the asyncsip facade, which must not
// import modules/, resolves host names by default (tm.Config.Lookup =
// Resolver.NextHop). See modules/dns for the documentation and examples.
package sipdns
