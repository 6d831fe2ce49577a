//! Assembles the running gateway from a checked [`Config`]: the Pingora server, the proxy
//! service on `listen`, and the admin service on `admin.listen`.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::{AdminApp, Readiness};
use crate::auth::issuer::{keep_fresh, IssuerRuntime};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::proxy::Gateway;
use crate::telemetry::Metrics;

/// Seconds Pingora waits, on SIGTERM, before it stops accepting (lets load balancers see
/// `/readyz` fail) and then for in-flight requests to finish.
const GRACE_PERIOD_SECS: u64 = 1;
const GRACEFUL_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Builds the server; `run_forever` on the result serves until a signal stops it.
pub fn build(config: &Config) -> Result<Server, String> {
    let conf = ServerConf {
        threads: config.workers,
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(GRACEFUL_SHUTDOWN_TIMEOUT_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let auth = Arc::new(Authenticator::new(config, &metrics)?);
    let mut readiness = Readiness::default();
    for issuer in auth.issuers() {
        let ready = issuer.clone();
        readiness.add_check(move || ready.is_ready());
        server.add_service(background_service(
            &format!("issuer {}", issuer.config.name),
            IssuerRefresher(issuer.clone()),
        ));
    }
    let readiness = Arc::new(readiness);

    let gateway = Gateway::new(config, &metrics, auth)?;
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "drawbridge");
    proxy.add_tcp(&config.listen);

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

    server.add_service(proxy);
    server.add_service(admin);
    // Listeners are bound when the services start; issuers add their own checks above.
    readiness.set(true);
    Ok(server)
}

/// Keeps one issuer's metadata and keys fresh for as long as the server runs.
struct IssuerRefresher(Arc<IssuerRuntime>);

#[async_trait]
impl BackgroundService for IssuerRefresher {
    async fn start(&self, shutdown: ShutdownWatch) {
        keep_fresh(self.0.clone(), shutdown).await;
    }
}
