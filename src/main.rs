//! The `drawbridge` command: `run` (the default) and `validate`.

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
    /// Configuration file used when no subcommand is given.
    #[arg(long, default_value = "gateway.yaml")]
    config: PathBuf,
    /// Reload when the configuration file, or a file it names, changes (polled every
    /// INTERVAL, default 2s), as well as on SIGHUP. When no subcommand is given.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s")]
    watch: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic (the default).
    Run {
        /// The gateway.yaml to serve.
        #[arg(long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Reload when the configuration file, or a file it names (secret_file,
        /// value_file, private_key_file, ca_file), changes: polled every INTERVAL
        /// (default 2s), as well as on SIGHUP. For mounted ConfigMaps and Secrets.
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s")]
        watch: Option<String>,
    },
    /// Check a configuration file: prints `ok`, or every error and exits 2.
    Validate {
        /// The file to check.
        file: PathBuf,
    },
    /// Print a new random session key (32 bytes, base64) for `sessions.keys[].secret`.
    Keygen,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate { file }) => validate(&file),
        Some(Command::Run { config, watch }) => run(&config, watch.as_deref(), cli.log_format),
        Some(Command::Keygen) => keygen(),
        None => run(&cli.config, cli.watch.as_deref(), cli.log_format),
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

fn validate(file: &std::path::Path) -> ExitCode {
    match config::load_file(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::from(2)
        }
    }
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
