//! Integration tests: the built `drawbridge` binary in front of in-process upstreams.
//! One test binary with modules keeps link time low.

mod entra;
mod harness;
mod idp;
mod upstream;

mod arguments;
mod auth;
mod cli;
mod connections;
mod credentials;
mod deploy;
mod entra_selftest;
mod errors;
mod exchange;
mod exchange_idp;
mod explain;
mod faults;
mod handles;
mod idp_selftest;
mod listener_tls;
mod lists;
mod log_budget;
mod metrics;
mod modern;
mod obo;
mod pins;
mod policy;
mod providers;
mod proxying;
mod rate_limits;
mod reload;
mod request_forms;
mod request_ids;
mod request_meta;
mod response_forms;
mod sessions;
mod streaming;
mod tasks;
mod tls;
mod upstream_dns;
mod url_forms;
