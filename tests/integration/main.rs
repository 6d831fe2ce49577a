//! Integration tests: the built `drawbridge` binary in front of in-process upstreams.
//! One test binary with modules keeps link time low.

mod harness;
mod upstream;

mod cli;
mod errors;
mod metrics;
mod proxying;
mod streaming;
mod tls;
