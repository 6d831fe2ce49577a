//! The baseline for the load benchmark (`benches/load/run.sh`, target (c)): a Pingora
//! proxy with no logic of its own, built with the same Pingora version, features and
//! release profile as drawbridge. Whatever drawbridge costs beyond this is drawbridge's.
//!
//! ```text
//! bare_pingora --listen 127.0.0.1:18402 --upstream 127.0.0.1:18400 [--threads 1]
//! ```
//!
//! Declared in Cargo.toml as a `[[bench]]` with `harness = false`, so `cargo test` does
//! not build it; `cargo bench` runs it without `--listen` and it exits at once.
//! SIGINT stops it immediately (Pingora's fast shutdown).

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Forwards every request, unchanged, to one plain-HTTP upstream.
struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    threads: usize,
}

/// `Ok(None)` when there is nothing to serve (e.g. started by `cargo bench`).
fn parse_args() -> std::result::Result<Option<Args>, String> {
    let (mut listen, mut upstream, mut threads) = (None, None, 1);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--upstream" => {
                let v = value()?;
                upstream = Some(v.parse().map_err(|e| format!("--upstream {v}: {e}"))?);
            }
            "--threads" => {
                let v = value()?;
                threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
            }
            // Passed by `cargo bench`; this target is a server, not a benchmark.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    match (listen, upstream) {
        (Some(listen), Some(upstream)) => Ok(Some(Args {
            listen,
            upstream,
            threads,
        })),
        (None, None) => Ok(None),
        _ => Err("both --listen and --upstream are required".to_string()),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            eprintln!("bare_pingora: a proxy for benches/load/run.sh; usage: bare_pingora --listen ADDR --upstream ADDR [--threads N]");
            return;
        }
        Err(e) => {
            eprintln!("bare_pingora: {e}");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: args.threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        BareProxy {
            upstream: args.upstream,
        },
        "bare_pingora",
    );
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);
    server.run_forever()
}
