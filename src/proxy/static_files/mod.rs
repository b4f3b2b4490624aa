//! Static file serving for `root` / `alias` locations, with nginx's
//! meanings (static, index, try_files, gzip_static and expires).
//!
//! # Layout
//!
//! The pipeline of [`serve`], phase by phase:
//!
//! 1. `facts`: read the request once into owned facts (method,
//!    precondition fields, Range, Accept-Encoding via `accept_encoding`).
//! 2. `try_files`: expand `try_files` templates into candidate URIs;
//!    `rel_path` maps each URI below the base (`root` or `alias`),
//!    refusing alias-prefix tricks.
//! 3. Fast path, on the async thread: the first candidate is a small file
//!    in the `cache` and one `stat` shows it unchanged → answer from
//!    memory.
//! 4. Otherwise one blocking-pool hop, `lookup`: `open` each
//!    candidate confined below the base (`openat2` + `RESOLVE_BENEATH`),
//!    apply nginx's directory rules (301 to add a slash, index files, 403),
//!    pick a `.br`/`.gz` sidecar, read the first chunk.
//! 5. For an existing file, `decision` applies RFC 9110: `conditional`
//!    requests (304/412) then `range`s (206/416), using the
//!    `validators` (nginx-format ETag, Last-Modified).
//! 6. `response` builds the head (with `mime` types and `expires`);
//!    bodies come from memory or stream from disk (`file_body`: chunks
//!    read inline from the page cache, buffers from `chunk_pool`).
//!
//! Everything but `open`, `lookup`, `cache`, `chunk_pool` and `file_body`
//! is pure and tested on its own; `tests` runs the whole pipeline on real
//! directory trees, and `tests/static_files.rs` holds the traversal corpus.

mod cache;
mod chunk_pool;
mod conditional;
mod decision;
mod facts;
mod file_body;
// Also read back request bodies spooled to a file (client_body/spool.rs).
pub(crate) use file_body::{read_at, read_cached};
pub(crate) mod fuzz;
mod lookup;
mod mime;
mod open;
mod percent;
mod range;
mod rel_path;
mod response;
mod try_files;
mod validators;

use std::time::SystemTime;

use http::{Response, StatusCode, request};

use self::cache::{FileCache, Known, still_absent, still_same};
use self::decision::decide;
use self::facts::{Access, RequestFacts};
use self::lookup::{Found, Job};
use self::open::Confinement;
use self::response::{LocationHeaders, Representation};
use self::try_files::{Plan, expand_fallback};
use super::body::Body;
use super::sendfile::SendfileHandle;
use super::uri_path::NormalizedPath;
use crate::config::compression::MimeTypes;
use crate::config::{StaticSite, TryFallback};

/// The result of trying to serve a request from files.
#[derive(Debug)]
pub enum Outcome {
    /// A finished response (200, 206, 304, 301, 403, 404, 405, 416...).
    Response(Response<Body>),
    /// Continue in the named location (`try_files ... @name`).
    Named(String),
    /// Internal redirect: match this URI again. It is in URI form (path
    /// percent-encoded, optional `?query`): split off the query and run the
    /// path through [`NormalizedPath::parse`]. Produced by a `try_files`
    /// URI fallback (its query is what the template says, as in nginx:
    /// `/index.php?$args` keeps the arguments, `/index.html` drops them)
    /// and by `index` (the original query is kept).
    Redirect(String),
}

/// Serves `path` from `site`.
///
/// Status responses (403, 404, 405, 500, a `=code` fallback) have empty
/// bodies: error pages are the handler's business (`error_page`).
/// `sendfile`: the connection can take file ranges by `sendfile(2)`;
/// files of the `compressed` types are never sent so, since the response
/// will be compressed on its way out.
pub async fn serve(
    site: &StaticSite,
    req: &request::Parts,
    path: &NormalizedPath,
    sendfile: Option<&SendfileHandle>,
    compressed: Option<&MimeTypes>,
) -> Outcome {
    let sendfile = sendfile.map(|handle| SendfileChoice {
        handle: handle.clone(),
        unless: compressed.cloned(),
    });
    serve_with(
        FileCache::global(),
        Confinement::detect(),
        site,
        req,
        path,
        sendfile,
    )
    .await
}

/// A connection's `sendfile` queue, and the media types it must not be
/// used for.
#[derive(Debug, Clone)]
pub(crate) struct SendfileChoice {
    pub handle: SendfileHandle,
    pub unless: Option<MimeTypes>,
}

impl SendfileChoice {
    /// The handle, when a file of `content_type` may go out by sendfile.
    pub fn for_type(&self, content_type: &http::HeaderValue) -> Option<SendfileHandle> {
        let compressed = self
            .unless
            .as_ref()
            .is_some_and(|t| content_type.to_str().is_ok_and(|ct| t.contains(ct)));
        (!compressed).then(|| self.handle.clone())
    }
}

async fn serve_with(
    cache: &'static FileCache,
    confinement: Confinement,
    site: &StaticSite,
    req: &request::Parts,
    path: &NormalizedPath,
    sendfile: Option<SendfileChoice>,
) -> Outcome {
    let facts = RequestFacts::new(req, site.gzip_static);
    // Without try_files nothing but a file can come out of this location,
    // so other methods are refused before any file-system work.
    if site.try_files.is_empty() && !facts.access.can_read() {
        return Outcome::Response(response::method_not_allowed());
    }
    let location = LocationHeaders {
        expires: site.expires,
        vary_accept_encoding: site.gzip_static,
    };
    let plan = Plan::new(
        &site.base,
        &site.try_files,
        path.as_str(),
        facts.query.as_deref(),
    );
    let now = SystemTime::now();
    if facts.access.can_read() {
        if let Some(response) = from_cache(cache, site, &plan, &facts, location, now) {
            return Outcome::Response(response);
        }
    }
    let query = facts.query.clone();
    let job = Job {
        base: rel_path::base_dir(&site.base).to_path_buf(),
        plan,
        index: site.index.clone(),
        facts,
        now,
        confinement,
        sendfile,
    };
    let found = match tokio::task::spawn_blocking(move || lookup::run(&job, cache)).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "static file lookup task failed");
            return Outcome::Response(response::status(StatusCode::INTERNAL_SERVER_ERROR));
        }
    };
    match found {
        Found::File(reply, body) => Outcome::Response(response::finish(reply, body, location, now)),
        Found::Index(uri) => Outcome::Redirect(uri),
        Found::AddSlash(to) => Outcome::Response(response::moved_permanently(&to, location, now)),
        Found::MethodNotAllowed => Outcome::Response(response::method_not_allowed()),
        Found::Status(status) => Outcome::Response(response::status(status)),
        Found::NoCandidate => match &site.fallback {
            Some(TryFallback::Status(status)) => Outcome::Response(response::status(*status)),
            Some(TryFallback::Named(name)) => Outcome::Named(name.clone()),
            Some(TryFallback::Uri(template)) => {
                Outcome::Redirect(expand_fallback(template, path.as_str(), query.as_deref()))
            }
            None => Outcome::Response(response::status(StatusCode::NOT_FOUND)),
        },
    }
}

/// The fast path: answers from the cache when the first candidate is a
/// cached small file that one `stat` shows unchanged (and, with
/// gzip_static, the sidecars the client takes are known too). `None`
/// sends the request to the blocking lookup, which refills the cache.
fn from_cache(
    cache: &FileCache,
    site: &StaticSite,
    plan: &Plan,
    facts: &RequestFacts,
    location: LocationHeaders,
    now: SystemTime,
) -> Option<Response<Body>> {
    let (uri, rel) = plan.first_file()?;
    let base = rel_path::base_dir(&site.base);
    let key = rel.under(base);
    let Known::File(mut chosen) = cache.get(base, &key)? else {
        return None;
    };
    if !still_same(&key, &chosen.id) {
        return None;
    }
    let mut encoding = None;
    for coding in facts.encodings.iter() {
        let key = rel.with_suffix(coding.suffix())?.under(base);
        match cache.get(base, &key)? {
            Known::Absent if still_absent(&key) => continue,
            Known::File(sidecar) if still_same(&key, &sidecar.id) => {
                chosen = sidecar;
                encoding = Some(coding);
                break;
            }
            _ => return None,
        }
    }
    let size = chosen.size.bytes();
    let repr = Representation {
        size: chosen.size.clone(),
        validators: chosen.validators.clone(),
        content_type: mime::content_type(uri),
        encoding,
    };
    let decision = decide(facts, &repr.validators, size, now);
    let reply = response::reply(&repr, &decision);
    let body = if facts.access == Access::Head {
        Body::empty()
    } else {
        Body::full(response::from_memory(&reply.segments, &chosen.content)?)
    };
    Some(response::finish(reply, body, location, now))
}

#[cfg(test)]
mod tests;
