//! `vigil import`: an nginx.conf and a keepalived.conf in, a vigil config
//! and a report out. Pure: files are read through [`files::Files`] (the
//! command passes the disk, tests pass memory), and nothing else is
//! touched. See docs/MIGRATING.md.
//!
//! Layout: `nginx/` (tokenizer, parser with includes, directive table,
//! translation), `keepalived/` (the same for keepalived.conf), `report`
//! (what was not translated, and why), `out` + `toml_out` (the config
//! being written, with a comment naming each block's source).

pub mod files;
pub mod keepalived;
pub mod nginx;
pub mod out;
pub mod report;
pub mod toml_out;

use std::path::{Path, PathBuf};

pub use report::{Report, Status};

/// An input that cannot be read as nginx or keepalived configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    /// 0 when the error is about the file as a whole.
    pub line: u32,
    pub message: String,
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub nginx: Option<PathBuf>,
    pub keepalived: Option<PathBuf>,
    /// nginx's prefix for relative root/alias/log paths; default
    /// /usr/share/nginx (Debian's, and nginx's usual `--prefix` layout).
    pub prefix: Option<PathBuf>,
    /// Where relative `include`s and certificates are looked up; default
    /// the directory of the nginx file.
    pub conf_prefix: Option<PathBuf>,
}

/// The translation.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The vigil config (TOML).
    pub toml: String,
    pub report: Report,
}

/// Reads and translates `input`.
pub fn import(files: &dyn files::Files, input: &Input) -> Result<Imported, ParseError> {
    let mut report = Report::default();
    let mut output = out::Output::default();
    let mut sources = Vec::new();
    if let Some(path) = &input.nginx {
        let conf_prefix = input
            .conf_prefix
            .clone()
            .or_else(|| path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let parsed = nginx::parse::parse(files, path, Some(&conf_prefix))?;
        let opts = nginx::translate::Options {
            prefix: input
                .prefix
                .clone()
                .unwrap_or_else(|| PathBuf::from("/usr/share/nginx")),
            conf_prefix,
        };
        output = nginx::translate::translate(&parsed, &opts, &mut report)?;
        sources.push(format!("nginx: {}", path.display()));
        if output.servers.is_empty() {
            report.add(
                path.display(),
                "",
                Status::Note,
                "no server was translated: the vigil config has no [[server]]",
                "",
            );
        }
    }
    if let Some(path) = &input.keepalived {
        let parsed = keepalived::parse::parse(files, path)?;
        let has_servers = !output.servers.is_empty();
        keepalived::translate::translate(&parsed, files, &mut output, &mut report, has_servers);
        sources.push(format!("keepalived: {}", path.display()));
    }
    let mut header = vec!["vigil config written by `vigil import` from:".to_owned()];
    header.extend(sources.iter().map(|s| format!("  {s}")));
    header.push("Each block names the file:line it came from; what was not translated is in the import report.".into());
    output.header = header;
    Ok(Imported {
        toml: output.to_toml(),
        report,
    })
}

#[cfg(test)]
mod tests;
