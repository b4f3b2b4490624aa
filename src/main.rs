//! vigil — temporary minimal CLI of the `vrrp` branch: `vigil run -c FILE`
//! runs a config with only `[vrrp]`. The real CLI (clap, proxy, reload)
//! replaces this file on merge with the same command line.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Deserialize;
use vigil::config::error::Problems;
use vigil::vrrp::{self, VrrpFile};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    vrrp: VrrpFile,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [run, c, path] if run == "run" && (c == "-c" || c == "--config") => PathBuf::from(path),
        [v] if v == "version" || v == "--version" => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("usage: vigil run -c FILE");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read config: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let file: File = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let mut problems = Problems::new();
    let config = vrrp::validate(&file.vrrp, "vrrp", &mut problems);
    if let Err(e) = problems.finish(&path, &text) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let Some(config) = config else {
        return ExitCode::from(1);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(vrrp::run_standalone(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e}");
            ExitCode::from(1)
        }
    }
}
