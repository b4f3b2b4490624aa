//! The `vigil` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vigil::app::App;

use vigil::config::Config;

/// The system allocator, plus spare blocks on the proxy workers (see
/// `spare_blocks`).
#[global_allocator]
static ALLOCATOR: vigil::spare_blocks::SpareBlocks = vigil::spare_blocks::SpareBlocks;

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
    /// Ask a running vigil to reload its config (through the admin API).
    /// Exit code 0 if the new config is live, 1 if it was rejected (the old
    /// one keeps running) or vigil could not be reached.
    Reload {
        #[arg(short, long, default_value = "conf/vigil.toml")]
        config: PathBuf,
        /// Admin address; by default `[admin] listen` from the config.
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Drain a running vigil: connections finish, then the VIPs go to the
    /// peer (priority-0 advert) and vigil exits. With --no-exit it stays up
    /// as a standby (out of VRRP elections) until `vigil undrain`.
    Drain {
        #[arg(short, long, default_value = "conf/vigil.toml")]
        config: PathBuf,
        #[arg(long)]
        admin: Option<SocketAddr>,
        #[arg(long)]
        no_exit: bool,
    },
    /// Undo `vigil drain --no-exit`: serve normally and rejoin elections.
    Undrain {
        #[arg(short, long, default_value = "conf/vigil.toml")]
        config: PathBuf,
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Translate an nginx.conf and/or a keepalived.conf into a vigil config.
    /// The report lists every directive not translated (file:line, why,
    /// what to do instead). Exit code 0 if everything was translated, 3 if
    /// something was left out (the config is still written), 1 if an input
    /// cannot be read as nginx or keepalived configuration.
    Import {
        /// The nginx configuration (nginx.conf, or a file from conf.d).
        #[arg(long)]
        nginx: Option<PathBuf>,
        /// The keepalived configuration.
        #[arg(long)]
        keepalived: Option<PathBuf>,
        /// Where to write the vigil config (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Where to write the report (default: standard error).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the report as JSON.
        #[arg(long)]
        json: bool,
        /// nginx's prefix, for relative root, alias and log paths
        /// (default /usr/share/nginx).
        #[arg(long)]
        prefix: Option<PathBuf>,
        /// nginx's configuration directory, for relative includes and
        /// certificates (default: the directory of the --nginx file).
        #[arg(long)]
        conf_prefix: Option<PathBuf>,
    },
    /// Show a running vigil's state: listeners, upstream health, VRRP.
    Status {
        #[arg(short, long, default_value = "conf/vigil.toml")]
        config: PathBuf,
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Print the raw JSON document instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The crash guardian `vigil run` starts for itself (internal).
    #[command(name = "__guardian", hide = true)]
    Guardian,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(config),
        Command::Guardian => {
            vigil::privileges::raise_network_capabilities();
            vigil::vrrp::guardian::serve()
        }
        Command::Reload { config, admin } => {
            admin_call(&config, admin, "POST", "/reload", print_reply)
        }
        Command::Drain {
            config,
            admin,
            no_exit,
        } => {
            let path = if no_exit {
                "/drain?exit=false"
            } else {
                "/drain"
            };
            admin_call(&config, admin, "POST", path, print_reply)
        }
        Command::Import {
            nginx,
            keepalived,
            output,
            report,
            json,
            prefix,
            conf_prefix,
        } => import(
            vigil::import::Input {
                nginx,
                keepalived,
                prefix,
                conf_prefix,
            },
            output,
            report,
            json,
        ),
        Command::Undrain { config, admin } => {
            admin_call(&config, admin, "POST", "/undrain", print_reply)
        }
        Command::Status {
            config,
            admin,
            json,
        } => admin_call(&config, admin, "GET", "/status", |status, body| {
            if status != 200 {
                eprint!("{body}");
                return ExitCode::FAILURE;
            }
            if json {
                print!("{body}");
                return ExitCode::SUCCESS;
            }
            match serde_json::from_str(&body) {
                Ok(doc) => {
                    print!("{}", vigil::status_table::render(&doc));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("unexpected /status document: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

/// Prints an admin reply; success for 2xx.
fn print_reply(status: u16, body: String) -> ExitCode {
    if (200..300).contains(&status) {
        print!("{body}");
        ExitCode::SUCCESS
    } else {
        eprint!("{body}");
        ExitCode::FAILURE
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            // Warnings do not fail the check (nginx -t behaves the same):
            // an expired certificate still loads.
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} servers, {} listeners, {} upstreams{})",
                path.display(),
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
    }
}

fn import(
    input: vigil::import::Input,
    output: Option<PathBuf>,
    report_path: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    use vigil::import::{Status, files::Disk};
    if input.nginx.is_none() && input.keepalived.is_none() {
        eprintln!("vigil import: give --nginx FILE and/or --keepalived FILE");
        return ExitCode::FAILURE;
    }
    let mut imported = match vigil::import::import(&Disk, &input) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("vigil import: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The same checks `vigil check` makes (certificates read, names
    // resolved): here they can fail for reasons of this machine, so they
    // are reported, not fatal.
    let check_path = output
        .clone()
        .unwrap_or_else(|| PathBuf::from("vigil.toml"));
    if let Err(e) = Config::parse(&imported.toml, &check_path) {
        imported.report.add(
            "",
            "",
            Status::Note,
            format!("the written config does not pass `vigil check` on this machine:\n{e}"),
            "run vigil check where vigil will run (certificates and host names must be there)",
        );
    }
    match &output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("vigil import: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{}", imported.toml),
    }
    let text = if json {
        imported.report.json()
    } else {
        imported.report.text()
    };
    match &report_path {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("vigil import: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => eprint!("{text}"),
    }
    if imported.report.left_out() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn run(path: PathBuf) -> ExitCode {
    vigil::malloc_tuning::apply();
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log.level);
    vigil::privileges::raise_network_capabilities();
    // A VRRP speaker starts `vigil __guardian` to remove its VIPs should
    // this process die without doing so.
    vigil::vrrp::guardian::enable("/proc/self/exe");
    // The control runtime: signals, reloads, health checks, the admin API
    // and VRRP. Client traffic runs on the worker threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let vrrp = config
        .vrrp
        .as_ref()
        .is_some_and(|v| !v.instances.is_empty());
    let result = runtime.block_on(async {
        if vrrp {
            vigil::privileges::raise_control_thread_priority();
        }
        let app = App::start_with(&path, config).await?;
        app.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {}", vigil::app::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Calls the admin API of the vigil running `config` (or at `admin`).
fn admin_call(
    config: &Path,
    admin: Option<SocketAddr>,
    method: &str,
    path: &str,
    on_reply: impl FnOnce(u16, String) -> ExitCode,
) -> ExitCode {
    let addr = match admin.map(Ok).unwrap_or_else(|| admin_addr_of(config)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match vigil::admin::request(addr, method, path) {
        Ok((status, body)) => on_reply(status, body),
        Err(e) => {
            eprintln!("cannot reach vigil's admin API at {addr}: {e} (is vigil running?)");
            ExitCode::FAILURE
        }
    }
}

/// `[admin] listen` from a config file, read leniently: the file may hold
/// the very mistake the reload is about to report.
fn admin_addr_of(config: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("{}: cannot read config: {e}", config.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {}", config.display(), e.message()))?;
    let listen = table
        .get("admin")
        .and_then(|a| a.get("listen"))
        .and_then(|l| l.as_str())
        .ok_or_else(|| {
            format!(
                "{} has no [admin] listen; add one (e.g. listen = \"127.0.0.1:9090\"), pass \
                 --admin ADDR, or send SIGHUP to the vigil process to reload",
                config.display()
            )
        })?;
    let mut addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("[admin] listen = {listen:?} is not an address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

/// `RUST_LOG` wins over `[log] level`.
fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
