//! Assembles the running gateway from a checked [`Config`]: the Pingora server, the proxy
//! service on `listen`, the admin service on `admin.listen`, and the supervisor that
//! keeps issuers fresh and reloads the configuration on SIGHUP; and the shutdown sequence:
//! SIGTERM turns `/readyz` to 503 while traffic is still served (`shutdown_drain`), then
//! the listeners stop and in-flight requests get up to `shutdown_grace` to finish; the
//! process exits as soon as the last one is done.
//! Client connections on the MCP listener are admitted and timed by [`connections`];
//! with `tls`, the listener speaks HTTPS with the certificate in [`tls`]'s slot.

mod connections;
mod preface;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::{AdminApp, Readiness};
use crate::auth::issuer::{keep_fresh, IssuerRuntime};
use crate::auth::Authenticator;
use crate::config;
use crate::config::watch::{Signature, Watch};
use crate::proxy::{Gateway, GatewayState};
use crate::telemetry::Metrics;
use crate::upstream_dns::{self, Addresses, Change};

/// After the grace period (`shutdown_grace`, during which in-flight requests finish),
/// how long Pingora waits for its runtimes to stop.
const GRACEFUL_SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// A built gateway process, ready to serve.
pub struct Process {
    server: Server,
    signals: DrainThenStop,
}

impl Process {
    /// Serves until a signal stops the process, then exits 0.
    pub fn run(self) -> ! {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(self.signals),
        });
        std::process::exit(0)
    }
}

/// Builds the server from `loaded` (read from `config_path`); [`Process::run`] serves
/// until a signal stops it. `config_path` is re-read on SIGHUP, and also when it or a file
/// it names changes if `watch` gives a poll interval.
pub fn build(
    loaded: &config::Loaded,
    config_path: PathBuf,
    watch: Option<Duration>,
) -> Result<Process, String> {
    let config = &loaded.config;
    let conf = ServerConf {
        threads: config.workers,
        grace_period_seconds: Some(config.shutdown_grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(GRACEFUL_SHUTDOWN_TIMEOUT_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let auth = Arc::new(Authenticator::new(config, metrics.as_ref(), None)?);
    let client_metrics = crate::telemetry::client::ClientMetrics::register(metrics.registry())
        .map_err(|e| format!("metrics: {e}"))?;
    // Upstream host names: looked up now (a name that does not resolve leaves only its
    // routes answering 503), then again every `dns.refresh` by the supervisor.
    let addresses = Arc::new(Addresses::default());
    let state = GatewayState::build(config, &metrics, auth, &addresses)?;
    for (host, why) in upstream_dns::resolve_new(&addresses, config.dns.timeout) {
        tracing::warn!(%host, error = %why, "an upstream host does not resolve; its routes answer 503 until it does");
    }
    let gateway = Gateway::new(state, &metrics).with_client_metrics(client_metrics.clone());
    metrics.config_loaded();
    let state = gateway.state_handle();

    let mut readiness = Readiness::default();
    // Pingora binds the listeners when the services start, and retries for ever when the
    // address is taken: ready only once the MCP listener accepts a connection.
    let listening = Arc::new(AtomicBool::new(false));
    let accepting = listening.clone();
    readiness.add_check(move || accepting.load(Ordering::Acquire));
    let issuers_state = state.clone();
    readiness.add_check(move || {
        issuers_state
            .load()
            .authenticator()
            .issuers()
            .iter()
            .all(|i| i.is_ready())
    });
    let stale_state = state.clone();
    readiness.add_note(move || {
        let stale: Vec<String> = stale_state
            .load()
            .authenticator()
            .issuers()
            .iter()
            .filter(|i| i.keys_stale())
            .map(|i| i.config.name.clone())
            .collect();
        (!stale.is_empty()).then(|| format!("stale keys: {}", stale.join(", ")))
    });
    // Which issuer cannot be reached, by name and URL (public values, no secrets): the
    // first thing an operator needs when the gateway is unready or refuses with 503.
    let unreachable_state = state.clone();
    readiness.add_note(move || {
        let unreachable: Vec<String> = unreachable_state
            .load()
            .authenticator()
            .issuers()
            .iter()
            .filter(|i| i.unreachable())
            .map(|i| format!("{} ({})", i.config.name, i.config.issuer))
            .collect();
        (!unreachable.is_empty()).then(|| {
            format!(
                "issuer unreachable (metadata or keys could not be fetched): {}",
                unreachable.join(", ")
            )
        })
    });
    // Which upstream host does not resolve, and for which routes: those routes answer
    // 503, the others are served, so the gateway stays ready.
    let unresolved_state = state.clone();
    readiness.add_note(move || {
        let state = unresolved_state.load();
        let lines: Vec<String> = state
            .unresolved_upstreams()
            .into_iter()
            .map(|(host, routes, why)| format!("{host} (routes {}: {why})", routes.join(", ")))
            .collect();
        (!lines.is_empty()).then(|| {
            format!(
                "upstream host does not resolve (its routes answer 503): {}",
                lines.join("; ")
            )
        })
    });
    let readiness = Arc::new(readiness);

    let client_connections = connections::ClientConnections::new(
        pingora::proxy::http_proxy(&server.configuration, gateway),
        config.client,
        client_metrics,
    );
    let open_connections = client_connections.open_connections();
    let mut proxy = Service::new("drawbridge".to_string(), client_connections);
    let certificate = match &config.tls {
        None => None,
        Some(t) => {
            let tls_metrics = crate::telemetry::tls::TlsMetrics::register(metrics.registry())
                .map_err(|e| format!("metrics: {e}"))?;
            tls_metrics.serving(t.certificate.not_after);
            tracing::info!(
                serial = %t.certificate.serial,
                not_after = t.certificate.not_after,
                "the MCP listener speaks HTTPS (h2, http/1.1)"
            );
            Some((tls::CertificateSlot::new(&t.certificate), tls_metrics))
        }
    };
    // No L4 read buffer on client connections. Pingora's default is a 64 KiB buffer per
    // connection, zero-filled when the connection is accepted, so every idle keep-alive
    // connection and every open event stream held 64 KiB of resident memory (measured
    // by benches/load/idle_streams.py). Pingora's HTTP/1 parser keeps its own header
    // buffer and reads bodies in its own 64 KiB chunks, so little is lost.
    let mut listener = ListenerConfig::tcp(&config.listen).l4_buffer(L4BufferSettings {
        read: Some(0),
        write: None,
    });
    if let Some((slot, _)) = &certificate {
        listener = listener.tls(tls::settings(slot.clone())?);
    }
    proxy.add_listener(listener);

    let admin_app = AdminApp {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let mut admin = Service::new(
        "drawbridge admin".to_string(),
        HttpServer::new_app(admin_app),
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.admin_listen);

    let supervisor = Supervisor {
        watch: watch.map(|interval| (interval, watched_files(&config_path, &loaded.files))),
        config_path,
        probe: probe_address(&config.listen),
        listening,
        listen: (config.listen.clone(), config.admin_listen.clone()),
        certificate,
        state,
        metrics,
        addresses,
        readiness: readiness.clone(),
        open_connections,
        grace: config.shutdown_grace,
    };
    server.add_service(background_service("supervisor", supervisor));
    server.add_service(proxy);
    server.add_service(admin);
    // The listener and the issuers have their own checks above.
    readiness.set(true);
    Ok(Process {
        server,
        signals: DrainThenStop {
            readiness,
            drain: config.shutdown_drain,
            grace: config.shutdown_grace,
        },
    })
}

/// Pingora's signal handling with a drain in front of the graceful stop: on SIGTERM,
/// `/readyz` turns 503 at once while both listeners keep serving for `drain`, so load
/// balancers that poll it take this replica out before its listeners close. A second
/// SIGTERM ends the drain early; SIGINT stops at once; SIGQUIT hands the listeners to a
/// new process (Pingora's graceful upgrade).
struct DrainThenStop {
    readiness: Arc<Readiness>,
    drain: Duration,
    grace: Duration,
}

/// A signal stream, or `None` when it could not be registered (then it never fires).
fn listen_for(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(kind) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::error!(error = %e, signal = kind.as_raw_value(), "cannot listen for a signal");
            None
        }
    }
}

async fn arrival(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainThenStop {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::SignalKind;
        let mut terminate = listen_for(SignalKind::terminate());
        let mut interrupt = listen_for(SignalKind::interrupt());
        let mut quit = listen_for(SignalKind::quit());
        tokio::select! {
            _ = arrival(&mut terminate) => {}
            _ = arrival(&mut interrupt) => return ShutdownSignal::FastShutdown,
            _ = arrival(&mut quit) => return ShutdownSignal::GracefulUpgrade,
        }
        self.readiness.set(false);
        if !self.drain.is_zero() {
            tracing::info!(
                drain_ms = self.drain.as_millis() as u64,
                "SIGTERM: /readyz answers 503; still serving while load balancers drain"
            );
            tokio::select! {
                _ = tokio::time::sleep(self.drain) => {}
                _ = arrival(&mut terminate) => tracing::info!("second SIGTERM: drain cut short"),
                _ = arrival(&mut interrupt) => return ShutdownSignal::FastShutdown,
            }
        }
        tracing::info!(
            grace_s = self.grace.as_secs(),
            "stopping the listeners; in-flight requests may finish"
        );
        ShutdownSignal::GracefulTerminate
    }
}

/// The MCP listener's address, with a wildcard IP replaced by loopback (where a
/// connection probe goes when `/proc` is not available). `None` when the address does
/// not parse (then not checked).
fn probe_address(listen: &str) -> Option<SocketAddr> {
    let mut addr: SocketAddr = listen.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some(addr)
}

/// Waits (as long as it takes) until this process listens on the MCP address, then sets
/// `listening`. Warns once if that takes long, e.g. because the address is in use.
async fn await_listener(probe: Option<SocketAddr>, listening: Arc<AtomicBool>) {
    const PATIENCE: Duration = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let mut warned = false;
    if let Some(addr) = probe {
        loop {
            let bound = match crate::admin::listener::this_process_listens_on(addr.port()) {
                Some(ours) => ours,
                // No /proc: a connection that gets through is the next best sign.
                None => matches!(
                    tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(addr)
                    )
                    .await,
                    Ok(Ok(_))
                ),
            };
            if bound {
                break;
            }
            if !warned && started.elapsed() > PATIENCE {
                warned = true;
                tracing::warn!(%addr, "the MCP listener is not bound yet (address in use?); /readyz answers 503 until it is");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    listening.store(true, Ordering::Release);
    if warned {
        tracing::info!("the MCP listener is bound now");
    }
}

/// Keeps issuer keys fresh, reloads on SIGHUP, and marks the gateway unready on shutdown.
struct Supervisor {
    config_path: PathBuf,
    /// `--watch`: the poll interval and the files the running configuration came from.
    watch: Option<(Duration, Vec<PathBuf>)>,
    /// Where the MCP listener is probed, and the flag readiness reads.
    probe: Option<SocketAddr>,
    listening: Arc<AtomicBool>,
    /// Addresses cannot change without a restart.
    listen: (String, String),
    /// With `tls`: the slot the listener's handshakes read, and its expiry gauge. Whether
    /// the listener speaks TLS cannot change without a restart; its files can.
    certificate: Option<(Arc<tls::CertificateSlot>, crate::telemetry::tls::TlsMetrics)>,
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Arc<Metrics>,
    /// Upstream host names and their addresses, shared by every configuration.
    addresses: Arc<Addresses>,
    readiness: Arc<Readiness>,
    /// Client connections still open; the process exits once none is left after the
    /// listeners stopped, instead of sitting out the whole grace period.
    open_connections: connections::OpenConnections,
    grace: Duration,
}

/// One background refresh task per live issuer, keyed by the runtime's address.
type Refreshers = HashMap<
    usize,
    (
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    ),
>;

impl Supervisor {
    /// Starts refreshers for issuers that have none and stops those of issuers no longer
    /// in use.
    fn sync_refreshers(&self, refreshers: &mut Refreshers) {
        let state = self.state.load();
        let live: Vec<&Arc<IssuerRuntime>> = state.authenticator().issuers().iter().collect();
        let key = |i: &Arc<IssuerRuntime>| Arc::as_ptr(i) as usize;
        refreshers.retain(|k, (task, stop)| {
            let keep = live.iter().any(|i| key(i) == *k);
            if !keep {
                let _ = stop.send(true);
                task.abort();
            }
            keep
        });
        for issuer in live {
            refreshers.entry(key(issuer)).or_insert_with(|| {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                (tokio::spawn(keep_fresh(issuer.clone(), stopped)), stop)
            });
        }
    }

    /// Reloads (see [`Supervisor::reload`]), counts and logs the outcome. Returns the files
    /// the configuration now comes from, when the reload was accepted.
    async fn reload_and_report(
        &self,
        refreshers: &mut Refreshers,
        trigger: &'static str,
    ) -> Option<Vec<PathBuf>> {
        match self.reload().await {
            // Logged, then counted, at once: whoever sees the count finds the line, and
            // the count follows the swap as closely as it can.
            Ok((routes, files)) => {
                tracing::info!(routes, trigger, path = %self.config_path.display(), "configuration reloaded");
                self.metrics.config_reload("success");
                self.sync_refreshers(refreshers);
                Some(watched_files(&self.config_path, &files))
            }
            Err(e) => {
                tracing::error!(error = %e, trigger, path = %self.config_path.display(), "reload refused; the previous configuration stays");
                self.metrics.config_reload("failure");
                None
            }
        }
    }

    /// Re-reads and checks the configuration; swaps it in whole only if all of it is good.
    /// Returns the number of routes and the files the configuration names.
    async fn reload(&self) -> Result<(usize, Vec<PathBuf>), String> {
        let loaded = config::load_file(&self.config_path).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let new = &loaded.config;
        if (new.listen.clone(), new.admin_listen.clone()) != self.listen {
            return Err("listen and admin.listen cannot change without a restart".into());
        }
        if new.tls.is_some() != self.certificate.is_some() {
            return Err("`tls` cannot be added or removed without a restart".into());
        }
        let current = self.state.load_full();
        let auth = Arc::new(Authenticator::new(
            new,
            self.metrics.as_ref(),
            Some(current.authenticator()),
        )?);
        let state = GatewayState::build(new, &self.metrics, auth, &self.addresses)?;
        // Hosts this configuration names for the first time: looked up before it serves
        // (DNS blocks: on a blocking thread). One that does not resolve does not refuse
        // the reload; its routes answer 503 until it does.
        let addresses = self.addresses.clone();
        let timeout = new.dns.timeout;
        let failed =
            tokio::task::spawn_blocking(move || upstream_dns::resolve_new(&addresses, timeout))
                .await
                .unwrap_or_default();
        for (host, why) in failed {
            tracing::warn!(%host, error = %why, "an upstream host does not resolve; its routes answer 503 until it does");
        }
        self.state.store(Arc::new(state));
        let in_use: Vec<(String, u16)> = new
            .routes
            .iter()
            .map(|r| (r.upstream.host.clone(), r.upstream.port))
            .collect();
        self.addresses.retain(&in_use);
        if let (Some((slot, tls_metrics)), Some(t)) = (&self.certificate, &new.tls) {
            slot.replace(&t.certificate);
            tls_metrics.serving(t.certificate.not_after);
            tracing::info!(
                serial = %t.certificate.serial,
                not_after = t.certificate.not_after,
                "the MCP listener serves the certificate in `tls.cert_file` to new connections"
            );
        }
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        Ok((new.routes.len(), loaded.files))
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let probing = tokio::spawn(await_listener(self.probe, self.listening.clone()));
        let resolving = tokio::spawn(keep_resolving(
            self.addresses.clone(),
            self.state.clone(),
            self.metrics.clone(),
        ));
        let mut refreshers = Refreshers::new();
        self.sync_refreshers(&mut refreshers);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is disabled");
                None
            }
        };
        // `--watch`: what the files looked like when the running configuration was read.
        let mut watched = self.watch.as_ref().map(|(interval, files)| {
            let mut ticks = tokio::time::interval(*interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (ticks, files.clone(), Watch::new(Signature::of(files)))
        });
        loop {
            let signal = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let tick = async {
                match watched.as_mut() {
                    Some((ticks, _, _)) => ticks.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signal => {
                    let files = self.reload_and_report(&mut refreshers, "signal").await;
                    if let Some((_, paths, watch)) = watched.as_mut() {
                        if let Some(files) = files {
                            *paths = files;
                        }
                        watch.settle(Signature::of(paths));
                    }
                }
                _ = tick => {
                    let Some((_, paths, watch)) = watched.as_mut() else { continue };
                    if watch.poll(Signature::of(paths)) {
                        // The poll settled on what it saw, which is what was just read;
                        // only a new set of files needs looking at again.
                        let files = self.reload_and_report(&mut refreshers, "file change").await;
                        if let Some(files) = files.filter(|f| f != paths) {
                            *paths = files;
                            watch.settle(Signature::of(paths));
                        }
                    }
                }
                _ = shutdown.changed() => {
                    // Load balancers polling /readyz stop sending new traffic.
                    self.readiness.set(false);
                    probing.abort();
                    resolving.abort();
                    for (_, (task, stop)) in refreshers.drain() {
                        let _ = stop.send(true);
                        task.abort();
                    }
                    exit_once_idle(&self.open_connections, self.grace).await;
                    return;
                }
            }
        }
    }
}

/// Looks every upstream host name up again every `dns.refresh` of the configuration in
/// use, each lookup within `dns.timeout`: a name that moved is followed (new connections
/// go to the new address), a lookup that fails keeps the last good address, and a name
/// that never resolved starts being served once it does.
async fn keep_resolving(
    addresses: Arc<Addresses>,
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Arc<Metrics>,
) {
    loop {
        let dns = state.load().dns();
        tokio::time::sleep(dns.refresh).await;
        for slot in addresses.names() {
            let lookup = tokio::net::lookup_host((slot.host.as_str(), slot.port));
            let answer = match tokio::time::timeout(dns.timeout, lookup).await {
                Ok(Ok(found)) => Ok(found.collect()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", dns.timeout.as_millis())),
            };
            let (before, was_failing) = (slot.address(), slot.failure().is_some());
            let change = slot.update(answer);
            metrics.upstream_dns_lookup(&slot.host, change.label());
            match change {
                Change::Moved => tracing::info!(
                    host = %slot.host,
                    from = ?before,
                    to = ?slot.address(),
                    "an upstream host has a new address; new connections go there"
                ),
                Change::Failed if !was_failing => tracing::warn!(
                    host = %slot.host,
                    error = slot.failure().unwrap_or_default(),
                    kept = ?before,
                    "an upstream host does not resolve; the last address (if any) stays in use"
                ),
                Change::Same if was_failing => {
                    tracing::info!(host = %slot.host, "an upstream host resolves again")
                }
                _ => {}
            }
        }
    }
}

/// After the listeners stopped: exits the process (status 0) as soon as no client
/// connection is open, within `grace`. Pingora itself sleeps the whole grace period
/// before it stops its runtimes, whether or not anything is in flight; this ends the wait
/// when the last request or stream is done. Once the listeners have stopped, Pingora
/// closes idle kept-alive connections (`http_cleanup`), so an open connection is one
/// with a request in flight. When `grace` runs out first, Pingora's own sequence ends
/// the process (and cuts what still runs).
async fn exit_once_idle(open: &connections::OpenConnections, grace: Duration) {
    const POLL: Duration = Duration::from_millis(20);
    // The accept loops stop and idle connections are closed just after the broadcast
    // that woke this task; a connection accepted in that moment is counted by then.
    const SETTLE: Duration = Duration::from_millis(100);
    let started = tokio::time::Instant::now();
    tokio::time::sleep(SETTLE).await;
    while open.count() > 0 {
        if started.elapsed() >= grace {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        waited_ms = started.elapsed().as_millis() as u64,
        "no request in flight; exiting"
    );
    std::process::exit(0)
}

/// What `--watch` polls: the configuration file and the files it names.
fn watched_files(config_path: &std::path::Path, named: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    for f in named {
        if !files.contains(f) {
            files.push(f.clone());
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_is_probed_on_loopback_when_it_binds_every_address() {
        assert_eq!(
            probe_address("0.0.0.0:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            probe_address("[::]:8080"),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            probe_address("10.1.2.3:80"),
            Some("10.1.2.3:80".parse().unwrap())
        );
        assert_eq!(probe_address("not an address"), None);
    }
}
