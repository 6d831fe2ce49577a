//! The `drawbridge` command: `run` (the default), `validate`, `keygen`, `pin` and `explain`. The configuration
//! file is `-c/--config` (anywhere on the line), else `$DRAWBRIDGE_CONFIG`, else
//! `gateway.yaml`; `validate FILE` names it too.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drawbridge::config;
use drawbridge::telemetry::logging::{self, LogFormat};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "drawbridge",
    version,
    about = "An authorizing gateway for MCP servers"
)]
struct Cli {
    /// Log line format (level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value = "pretty", global = true)]
    log_format: LogFormat,
    /// The gateway.yaml to use, before or after any subcommand [default: $DRAWBRIDGE_CONFIG,
    /// else gateway.yaml].
    #[arg(short = 'c', long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Reload when the configuration file, or a file it names, changes (polled every
    /// INTERVAL, default 2s), as well as on SIGHUP. For `run` (the default) only.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s")]
    watch: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic (the default).
    Run {
        /// Reload when the configuration file, or a file it names (secret_file,
        /// value_file, private_key_file, ca_file), changes: polled every INTERVAL
        /// (default 2s), as well as on SIGHUP. For mounted ConfigMaps and Secrets.
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s")]
        watch: Option<String>,
    },
    /// Check a configuration file: prints `ok`, or every error and exits 2.
    Validate {
        /// The file to check (or `-c FILE`).
        file: Option<PathBuf>,
        /// `text` for people, `json` for CI pipelines: every error and warning with file,
        /// line, column, key path and message.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
    /// Print a new random session key (32 bytes, base64) for `sessions.keys[].secret`.
    Keygen,
    /// Write the lock file of a route's tool definitions (`policy.pins`): from a saved
    /// tools/list answer (`--from`), or from the route's upstream with the route's
    /// upstream credential (a token exchange made from --token's). Exits 1 when it
    /// cannot, 2 on a usage or config error.
    Pin {
        /// The route whose upstream's tools are pinned.
        #[arg(long)]
        route: String,
        /// A saved tools/list answer (a JSON-RPC answer or its `result`; `-` for stdin)
        /// instead of asking the upstream.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Where to write the lock file [default: the route's `policy.pins.file`, else
        /// tools.lock]; `-` for stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A caller's access token for the route (`@FILE`: read from FILE; `-`: stdin),
        /// for a route whose upstream gets a token made from the caller's
        /// (token_exchange, on_behalf_of).
        #[arg(long, value_name = "TOKEN", conflicts_with = "from")]
        token: Option<String>,
    },
    /// Explain what the gateway would do with one request on a route, step by step: the
    /// caller, the route's scopes, each operation's rule, arguments and shadow rules, the
    /// pins, and the answer. Exits 0 when the request would be forwarded, 1 when it would
    /// be refused, 2 on a usage or config error.
    #[command(group(clap::ArgGroup::new("caller").required(true).args(["token", "scopes"])))]
    Explain {
        /// The route the request is sent to.
        #[arg(long)]
        route: String,
        /// The caller's access token (`-`: read from stdin; `@FILE`: read from FILE),
        /// verified against its issuer's keys (or introspected) as the gateway does.
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Decode the token without checking its signature (for an issuer this machine
        /// cannot reach); every other check is made, and a warning printed.
        #[arg(long, requires = "token")]
        no_verify: bool,
        /// The caller's scopes, space-separated, instead of a token.
        #[arg(long, value_name = "\"A B\"")]
        scopes: Option<String>,
        /// With --scopes: a JSON object of the caller's claims, for claim rules.
        #[arg(long, value_name = "FILE", requires = "scopes")]
        claims: Option<PathBuf>,
        /// The JSON-RPC request body (`-`: stdin). With --list: a saved list answer
        /// (tools/list, resources/list, resources/templates/list, prompts/list).
        #[arg(long, value_name = "FILE", required_unless_present = "list")]
        request: Option<PathBuf>,
        /// A header of the request, `Name: value` (repeatable): the `Mcp-*` and
        /// `MCP-Protocol-Version` headers are then judged against the body as the
        /// gateway judges them.
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Show what the caller would see in lists: each item of a saved list answer
        /// (--request), else each rule of the route's policy.
        #[arg(long)]
        list: bool,
        /// `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

/// How `validate` prints what it found.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

/// The environment variable naming the configuration file when `-c` is not given.
const CONFIG_ENV: &str = "DRAWBRIDGE_CONFIG";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let configured = cli
        .config
        .clone()
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
    let config_file = || configured.clone().unwrap_or_else(|| "gateway.yaml".into());
    if cli.watch.is_some()
        && matches!(
            cli.command,
            Some(
                Command::Validate { .. }
                    | Command::Keygen
                    | Command::Pin { .. }
                    | Command::Explain { .. }
            )
        )
    {
        eprintln!("drawbridge: --watch applies to `run` only");
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Validate { file, format }) => match (file, &cli.config) {
            (Some(file), Some(flag)) if file != *flag => {
                eprintln!("drawbridge: validate: give the file once, as FILE or as --config");
                ExitCode::from(2)
            }
            (Some(file), _) => validate(&file, format),
            (None, _) => validate(&config_file(), format),
        },
        Some(Command::Run { watch }) => run(
            &config_file(),
            watch.or(cli.watch).as_deref(),
            cli.log_format,
        ),
        Some(Command::Keygen) => keygen(),
        Some(Command::Pin {
            route,
            from,
            out,
            token,
        }) => match token.map(read_token).transpose() {
            Ok(token) => pin(
                &config_file(),
                &route,
                from.as_deref(),
                out.as_deref(),
                token.as_deref(),
            ),
            Err(e) => {
                eprintln!("drawbridge: pin: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Explain {
            route,
            token,
            no_verify,
            scopes,
            claims,
            request,
            headers,
            list,
            format,
        }) => {
            let caller = match (token, scopes) {
                (Some(token), _) => Caller::Token {
                    token,
                    verify: !no_verify,
                },
                (None, scopes) => Caller::Scopes {
                    scopes: scopes.unwrap_or_default(),
                    claims,
                },
            };
            let json = format == ReportFormat::Json;
            let input = ExplainInput {
                request,
                headers,
                list,
                json,
            };
            explain(&config_file(), &route, caller, input)
        }
        None => run(&config_file(), cli.watch.as_deref(), cli.log_format),
    }
}

/// Who `explain` judges, as the command line gave it.
enum Caller {
    Token {
        token: String,
        verify: bool,
    },
    Scopes {
        scopes: String,
        claims: Option<PathBuf>,
    },
}

/// Reads `-` (stdin) or a file.
fn read_input(path: &std::path::Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// What `explain` reads and how it prints.
struct ExplainInput {
    request: Option<PathBuf>,
    headers: Vec<String>,
    list: bool,
    json: bool,
}

/// `--header` values as a header map.
fn header_map(headers: &[String]) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: expected `Name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header `{h}`: not a header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header `{h}`: not a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// `drawbridge explain`: 0 allow, 1 deny, 2 usage or config error.
fn explain(
    file: &std::path::Path,
    route_name: &str,
    caller: Caller,
    input: ExplainInput,
) -> ExitCode {
    let ExplainInput {
        request,
        headers,
        list,
        json,
    } = input;
    let request = request.as_deref();
    use drawbridge::explain::{self, caller as who};
    let usage = |message: String| {
        eprintln!("drawbridge: explain: {message}");
        ExitCode::from(2)
    };
    let loaded = match config::load_file(file) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(2);
        }
    };
    let config = &loaded.config;
    let Some(route) = config.routes.iter().find(|r| r.name == route_name) else {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        return usage(format!(
            "no route named `{route_name}` in {} (routes: {})",
            file.display(),
            names.join(", ")
        ));
    };
    let stdin_token = matches!(&caller, Caller::Token { token, .. } if token == "-");
    if stdin_token && request.is_some_and(|r| r.as_os_str() == "-") {
        return usage("the token and the request cannot both come from stdin".into());
    }
    let body = match request.map(read_input).transpose() {
        Ok(body) => body,
        Err(e) => return usage(e),
    };
    let headers = match header_map(&headers) {
        Ok(headers) => headers,
        Err(e) => return usage(e),
    };
    let mut warnings = Vec::new();
    let identity = match caller {
        Caller::Scopes { scopes, claims } => {
            let claims = match claims.as_deref().map(read_input).transpose() {
                Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                    Ok(value) => Some(value),
                    Err(e) => return usage(format!("--claims: not JSON: {e}")),
                },
                Ok(None) => None,
                Err(e) => return usage(format!("--claims: {e}")),
            };
            match who::given(config, &scopes, claims.as_ref()) {
                Ok(identity) => identity,
                Err(e) => return usage(e),
            }
        }
        Caller::Token { token, verify } => {
            let token = match read_token(token) {
                Ok(token) => token,
                Err(e) => return usage(e),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let outcome = match runtime {
                Ok(rt) => rt.block_on(who::from_token(
                    config,
                    route,
                    &token,
                    verify,
                    &mut warnings,
                )),
                Err(e) => Err(format!("cannot start: {e}")),
            };
            match outcome {
                Ok(identity) => identity,
                Err(e) => {
                    for w in &warnings {
                        eprintln!("warning: {w}");
                    }
                    return usage(e);
                }
            }
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if list {
        return explain_list(route, &identity, body.as_deref(), json);
    }
    let Some(body) = body else {
        return usage("--request is required".into());
    };
    let limits = (config.max_body_bytes, config.max_batch);
    let request = explain::Request {
        body: &body,
        headers: &headers,
    };
    let explained = explain::explain(route, limits, &identity, &request);
    if json {
        println!("{}", explained.to_json());
    } else {
        print!("{}", explained.render_text());
    }
    match explained.allowed() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

/// `explain --list`: each item of a saved answer, or each rule, shown or hidden.
fn explain_list(
    route: &config::Route,
    identity: &drawbridge::explain::Identity,
    answer: Option<&[u8]>,
    json: bool,
) -> ExitCode {
    use drawbridge::explain;
    let Some(answer) = answer else {
        let lines = explain::list_rules(route, identity);
        match json {
            true => println!("{}", serde_json::json!({ "rules": lines })),
            false => lines.iter().for_each(|l| println!("{l}")),
        }
        return ExitCode::SUCCESS;
    };
    let items = match explain::list_answer(route, identity, &String::from_utf8_lossy(answer)) {
        Ok(items) => items,
        Err(e) => {
            eprintln!("drawbridge: explain: --list: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let items: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "kind": i.kind.field(),
                    "name": i.name,
                    "shown": i.hidden.is_none(),
                    "why": i.hidden,
                    "shadow": i.shadowed,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "items": items }));
    } else {
        for i in &items {
            match &i.hidden {
                None => match &i.shadowed {
                    None => println!("shown   {} {}", i.kind.field(), i.name),
                    Some(why) => println!(
                        "shown   {} {} (shadow mode; enforced: hidden, {why})",
                        i.kind.field(),
                        i.name
                    ),
                },
                Some(why) => println!("hidden  {} {}: {why}", i.kind.field(), i.name),
            }
        }
    }
    ExitCode::SUCCESS
}

fn print_errors(errors: &[config::ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

fn keygen() -> ExitCode {
    match drawbridge::mcp::session::generate_key() {
        Ok(key) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("drawbridge: {e}");
            ExitCode::from(1)
        }
    }
}

/// A `--token` argument: the token itself, `@FILE` or `-` (stdin), trimmed.
fn read_token(arg: String) -> Result<String, String> {
    let token = match arg.strip_prefix('@') {
        Some(path) => read_input(std::path::Path::new(path)),
        None if arg == "-" => read_input(std::path::Path::new("-")),
        None => Ok(arg.into_bytes()),
    }
    .map_err(|e| format!("--token: {e}"))?;
    let token = String::from_utf8_lossy(&token).trim().to_string();
    match token.is_empty() {
        true => Err("--token: empty".into()),
        false => Ok(token),
    }
}

/// `drawbridge pin`: reads every tool definition, writes their digests.
fn pin(
    file: &std::path::Path,
    route_name: &str,
    from: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
    caller: Option<&str>,
) -> ExitCode {
    use drawbridge::pin;
    let loaded = match config::load_file_for_pinning(file) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(2);
        }
    };
    let Some(route) = loaded.config.routes.iter().find(|r| r.name == route_name) else {
        eprintln!(
            "drawbridge: pin: no route named `{route_name}` in {}",
            file.display()
        );
        return ExitCode::from(2);
    };
    let outcome = match from {
        Some(path) => {
            let text = read_input(path).and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| format!("cannot read {}: not UTF-8", path.display()))
            });
            match text {
                Ok(text) => pin::read_answer(&text).and_then(|page| match page.next_cursor {
                    Some(_) => Err(pin::PinError(
                        "the saved answer is one page of several (it has a nextCursor): save every page's tools in one answer, or pin from the upstream".into(),
                    )),
                    None => Ok((page.digests, format!("saved tools/list answer `{}`", path.display()))),
                }),
                Err(e) => Err(pin::PinError(e)),
            }
        }
        None => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime
                    .block_on(pin::from_upstream(&loaded.config, route, caller))
                    .map(|(digests, pages)| {
                        (
                            digests,
                            format!(
                                "tools/list of route `{}`'s upstream {} ({pages} page{})",
                                route.name,
                                route.upstream.url,
                                if pages == 1 { "" } else { "s" }
                            ),
                        )
                    }),
                Err(e) => Err(pin::PinError(format!("cannot start: {e}"))),
            }
        }
    };
    let (digests, source) = match outcome {
        Ok(found) => found,
        Err(e) => {
            eprintln!("drawbridge: pin: {e}");
            return ExitCode::from(1);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let count = digests.len();
    let lock = drawbridge::policy::pins::LockFile::new(pin::rfc3339(now), source, digests);
    let text = match lock.render() {
        Ok(text) => text,
        Err(e) => {
            eprintln!("drawbridge: pin: {e}");
            return ExitCode::from(1);
        }
    };
    let out = out.map(PathBuf::from).unwrap_or_else(|| {
        route
            .pins
            .as_ref()
            .map_or_else(|| PathBuf::from("tools.lock"), |p| PathBuf::from(&p.file))
    });
    if out.as_os_str() == "-" {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    // Written beside it, then renamed: a gateway watching the file never reads half of it.
    let mut partial = out.clone().into_os_string();
    partial.push(".partial");
    let written = std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, &out));
    if let Err(e) = written {
        eprintln!("drawbridge: pin: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "pinned {count} tool{} in {}",
        if count == 1 { "" } else { "s" },
        out.display()
    );
    if route.pins.is_none() {
        eprintln!(
            "note: route `{}` has no `policy.pins` yet; add `pins: {{ file: {}, on_change: hide }}` to its policy",
            route.name,
            out.display()
        );
    }
    ExitCode::SUCCESS
}

fn validate(file: &std::path::Path, format: ReportFormat) -> ExitCode {
    let mut outcome = config::load_file(file);
    // A host that does not resolve from here is a warning, not an error: the gateway
    // starts and serves its other routes (and this machine may not be where it runs).
    if let Ok(loaded) = outcome.as_mut() {
        let unresolved = drawbridge::upstream_dns::unresolved_warnings(&loaded.config);
        loaded.warnings.extend(unresolved);
    }
    if format == ReportFormat::Json {
        println!("{}", json_report(file, &outcome));
    } else {
        match &outcome {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                println!("ok");
            }
            Err(errors) => print_errors(errors),
        }
    }
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

/// `validate --format json`: `{"valid", "errors", "warnings"}`, each entry with file, line,
/// column, key path and message (line and column `null` where unknown).
fn json_report(
    file: &std::path::Path,
    outcome: &Result<config::Loaded, Vec<config::ConfigError>>,
) -> serde_json::Value {
    let entry = |e: &config::ConfigError| {
        serde_json::json!({
            "file": e.file,
            "line": e.position.map(|p| p.line),
            "column": e.position.map(|p| p.column),
            "path": e.path,
            "message": e.message,
        })
    };
    let (errors, warnings): (Vec<_>, Vec<_>) = match outcome {
        Ok(loaded) => (
            Vec::new(),
            loaded
                .warnings
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "line": null,
                        "column": null,
                        "path": "",
                        "message": w,
                    })
                })
                .collect(),
        ),
        Err(errors) => (errors.iter().map(entry).collect(), Vec::new()),
    };
    serde_json::json!({
        "valid": outcome.is_ok(),
        "errors": errors,
        "warnings": warnings,
    })
}

fn run(file: &std::path::Path, watch: Option<&str>, log_format: LogFormat) -> ExitCode {
    logging::init(log_format);
    let watch = match watch.map(config::parse_duration).transpose() {
        Ok(Some(interval)) if interval.is_zero() => {
            eprintln!("--watch: the interval must be more than 0");
            return ExitCode::from(2);
        }
        Ok(interval) => interval,
        Err(e) => {
            eprintln!("--watch: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match config::load_file(file) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let process = match drawbridge::server::build(&loaded, file.to_path_buf(), watch) {
        Ok(process) => process,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        listen = %loaded.config.listen,
        admin = %loaded.config.admin_listen,
        routes = loaded.config.routes.len(),
        watch = watch.map(|w| format!("{}s", w.as_secs_f64())),
        "drawbridge serving"
    );
    process.run()
}
