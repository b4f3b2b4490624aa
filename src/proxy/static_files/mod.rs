//! Static file serving for `root` / `alias` locations.
//!
//! STUB: the types below are the contract with the config and the request
//! handler; `serve` is being written (see the static-files work).

// Built up commit by commit; `serve` uses them once the pipeline lands.
#[allow(dead_code)]
mod accept_encoding;
#[allow(dead_code)]
mod cache;
#[allow(dead_code)]
mod conditional;
#[allow(dead_code)]
mod decision;
#[allow(dead_code)]
mod facts;
#[allow(dead_code)]
mod file_body;
#[allow(dead_code)]
mod mime;
#[allow(dead_code)]
mod open;
#[allow(dead_code)]
mod percent;
#[allow(dead_code)]
mod range;
#[allow(dead_code)]
mod rel_path;
#[allow(dead_code)]
mod try_files;
#[allow(dead_code)]
mod validators;

use std::path::PathBuf;
use std::time::Duration;

use http::{Response, StatusCode, request};

use super::body::Body;
use super::uri_path::NormalizedPath;

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

/// The result of trying to serve a request from files.
#[derive(Debug)]
pub enum Outcome {
    /// A finished response (200, 206, 304, 301, 403, 404, 405, 416...).
    Response(Response<Body>),
    /// Continue in the named location (`try_files ... @name`).
    Named(String),
    /// Internal redirect: match this URI again (`try_files ... /index.html`).
    Redirect(String),
}

/// Serves `path` from `site`.
pub async fn serve(site: &StaticSite, req: &request::Parts, path: &NormalizedPath) -> Outcome {
    let _ = (site, req, path);
    Outcome::Response(
        Response::builder()
            .status(StatusCode::NOT_IMPLEMENTED)
            .body(Body::empty())
            .expect("static response"),
    )
}
