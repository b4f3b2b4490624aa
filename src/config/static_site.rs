//! A `root` / `alias` location's settings, validated: what the proxy's
//! static-file server (`proxy::static_files`) reads. nginx's meanings of
//! root, alias, index, try_files, expires and gzip_static.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

/// A location's static-file settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSite {
    pub base: FileBase,
    /// `index` file names tried, in order, for a directory path.
    pub index: Vec<String>,
    /// `try_files`, without its last element; empty = serve `$uri` only.
    pub try_files: Vec<TryFile>,
    /// The last element of `try_files`, used when no candidate exists.
    pub fallback: Option<TryFallback>,
    pub expires: Option<Expires>,
    /// Serve `file.br` / `file.gz` sidecars when the client accepts them.
    pub gzip_static: bool,
}

/// Where a path's file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileBase {
    /// nginx `root`: file = root + full URI path.
    Root(PathBuf),
    /// nginx `alias`: file = dir + (URI path minus the location prefix).
    Alias { prefix: String, dir: PathBuf },
}

/// One `try_files` candidate: a template where `$uri` is the request path.
/// A candidate ending in `/` is a directory (served through `index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryFile(pub String);

/// What `try_files` does when no candidate exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryFallback {
    /// `=404`: answer with this status.
    Status(StatusCode),
    /// `@app`: continue in the named location.
    Named(String),
    /// `/index.html`: internal redirect to this URI (matched again).
    Uri(String),
}

/// `expires`: what Cache-Control / Expires headers to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// `expires epoch`: Cache-Control: no-cache.
    Epoch,
    /// `expires max`: ten years.
    Max,
    /// `expires 7d`.
    After(Duration),
}
