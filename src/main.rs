//! The `vigil` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vigil::app::App;
use vigil::config::Config;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Reverse proxy with a built-in VRRP speaker: one binary for an nginx + keepalived pair"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run vigil with a config file.
    Run {
        #[arg(short, long, default_value = "conf/vigil.toml")]
        config: PathBuf,
    },
    /// Check a config file and exit (like `nginx -t`): 0 if valid, 1 if not.
    Check {
        #[arg(short, long, default_value = "conf/vigil.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                // Warnings do not fail the check (nginx -t behaves the
                // same): an expired certificate still loads.
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: ok ({} servers, {} listeners, {} upstreams{})",
                    config.display(),
                    c.servers.len(),
                    c.listeners.len(),
                    c.upstreams.len(),
                    if c.vrrp.is_some() { ", vrrp" } else { "" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => run(config),
    }
}

fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let app = App::start_with(&path, config)?;
        app.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` wins over `[log] level`.
fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
