//! The `drawbridge` command: `run` (the default), `validate` and `keygen`. The configuration
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
            Some(Command::Validate { .. } | Command::Keygen)
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
        None => run(&config_file(), cli.watch.as_deref(), cli.log_format),
    }
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
