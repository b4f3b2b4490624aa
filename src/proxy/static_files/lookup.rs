//! The file-system half of serving: everything one request needs from the
//! disk, done in a single blocking-pool hop (opening the base, trying the
//! candidates, the index files and the sidecars, `fstat`, and reading the
//! first chunk), instead of one `tokio::fs` hop per system call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;

use super::cache::{CachedFile, FileCache, FileId, Known};
use super::decision::decide;
use super::facts::{Access, RequestFacts};
use super::file_body::{CHUNK, FileBody, Segment, read_at};
use super::mime;
use super::open::{BaseDir, Confinement, OpenError, Opened, open_beneath};
use super::percent::encode_path;
use super::rel_path::RelPath;
use super::response::{self, Reply, Representation, Size};
use super::try_files::Plan;
use super::validators::Validators;
use crate::proxy::body::Body;

/// Everything the hop needs, owned.
#[derive(Debug)]
pub(crate) struct Job {
    pub base: PathBuf,
    pub plan: Plan,
    pub index: Vec<String>,
    pub facts: RequestFacts,
    pub now: SystemTime,
    pub confinement: Confinement,
    /// The connection can take files by `sendfile` (plain HTTP/1.1).
    pub sendfile: Option<super::SendfileChoice>,
}

/// What the file system said.
// Built once per lookup and moved once: boxing `File` would cost an
// allocation per response to save a copy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Found {
    /// `try_files`: no candidate exists; the fallback decides.
    NoCandidate,
    /// 403, 404, 500.
    Status(StatusCode),
    /// A file would be served, but not to this method.
    MethodNotAllowed,
    /// A directory named without its trailing slash: 301 to this Location.
    AddSlash(String),
    /// An index file exists: internal redirect to this URI.
    Index(String),
    /// A response for an existing file (200, 206, 304, 412, 416).
    File(Reply, Body),
}

/// Runs the lookup. Blocking: call it from the blocking pool.
pub(crate) fn run(job: &Job, cache: &FileCache) -> Found {
    let base = match BaseDir::open(&job.base) {
        Ok(base) => base,
        Err(e) => {
            return match job.plan {
                Plan::TryFiles(_) => Found::NoCandidate,
                Plan::Plain { .. } => Found::Status(refused(&job.base, e)),
            };
        }
    };
    let (uri, rel, opened) = match select(&base, job) {
        Ok(selected) => selected,
        Err(Miss::NoCandidate) => return Found::NoCandidate,
        Err(Miss::Status(status)) => return Found::Status(status),
    };
    // nginx's static and index handlers refuse other methods once they
    // would serve something; a try_files fallback (`@app`) still gets them.
    if !job.facts.access.can_read() {
        return Found::MethodNotAllowed;
    }
    if opened.is_dir() {
        if !uri.ends_with('/') {
            let mut location = encode_path(&uri);
            location.push('/');
            push_query(&mut location, job.facts.query.as_deref());
            return Found::AddSlash(location);
        }
        return index(&base, job, cache, &uri, &rel);
    }
    // `/file.txt/` names a directory that is not there; FIFOs, sockets and
    // devices are never served.
    if uri.ends_with('/') || !opened.is_regular() {
        return Found::Status(StatusCode::NOT_FOUND);
    }
    serve_file(&base, job, cache, &uri, &rel, opened)
}

/// Why no file was selected.
enum Miss {
    /// try_files: no candidate exists.
    NoCandidate,
    Status(StatusCode),
}

/// The URI to serve, its path and its open file.
fn select(base: &BaseDir, job: &Job) -> Result<(String, RelPath, Opened), Miss> {
    match &job.plan {
        Plan::Plain { uri, rel } => {
            let Some(rel) = rel else {
                return Err(Miss::Status(StatusCode::NOT_FOUND));
            };
            match open_beneath(base, rel, job.confinement) {
                Ok(opened) => Ok((uri.clone(), rel.clone(), opened)),
                Err(e) => Err(Miss::Status(refused(&job.base, e))),
            }
        }
        Plan::TryFiles(candidates) => {
            for candidate in candidates {
                let Some(rel) = &candidate.rel else { continue };
                // Any failure means "does not exist" to try_files, as in
                // nginx (which only logs the unusual errors).
                let opened = match open_beneath(base, rel, job.confinement) {
                    Ok(opened) => opened,
                    Err(OpenError::Io(e)) => {
                        tracing::warn!(base = %job.base.display(), path = rel.as_fs_str(), error = %e, "try_files candidate");
                        continue;
                    }
                    Err(_) => continue,
                };
                if opened.is_dir() != candidate.want_dir
                    || !(opened.is_dir() || opened.is_regular())
                {
                    continue;
                }
                return Ok((candidate.uri.clone(), rel.clone(), opened));
            }
            Err(Miss::NoCandidate)
        }
    }
}

/// ngx_http_index_module: the first index file that exists wins and the
/// request continues there by internal redirect (so a location matching
/// the index URI, e.g. one setting other headers for `.html`, applies);
/// none → 403, as nginx without autoindex. An index name starting with
/// `/` is a URI to redirect to without looking for it.
fn index(base: &BaseDir, job: &Job, cache: &FileCache, uri: &str, rel: &RelPath) -> Found {
    for name in &job.index {
        if name.starts_with('/') {
            let mut target = name.clone();
            push_query(&mut target, job.facts.query.as_deref());
            return Found::Index(target);
        }
        let Some(file) = rel.join(name) else { continue };
        match open_beneath(base, &file, job.confinement) {
            Ok(mut opened) if opened.is_regular() => {
                // The redirected request will want this file next: caching
                // it now lets that request skip the hop.
                if let Err(e) = remember(cache, &job.base, file.under(&job.base), &mut opened) {
                    tracing::warn!(path = file.as_fs_str(), error = %e, "reading index file");
                }
                let mut target = encode_path(&format!("{uri}{name}"));
                push_query(&mut target, job.facts.query.as_deref());
                return Found::Index(target);
            }
            Ok(_) | Err(OpenError::NotFound) => continue,
            Err(e) => return Found::Status(refused(&job.base, e)),
        }
    }
    Found::Status(StatusCode::FORBIDDEN)
}

/// Picks the representation (the file or a sidecar), decides the response
/// and prepares its body.
fn serve_file(
    base: &BaseDir,
    job: &Job,
    cache: &FileCache,
    uri: &str,
    rel: &RelPath,
    mut opened: Opened,
) -> Found {
    let mut cached = match remember(cache, &job.base, rel.under(&job.base), &mut opened) {
        Ok(cached) => cached,
        Err(e) => return read_failed(rel, &e),
    };
    let mut encoding = None;
    for coding in job.facts.encodings.iter() {
        let Some(sidecar) = rel.with_suffix(coding.suffix()) else {
            break;
        };
        let key = sidecar.under(&job.base);
        match open_beneath(base, &sidecar, job.confinement) {
            Ok(mut side) if side.is_regular() => {
                cached = match remember(cache, &job.base, key, &mut side) {
                    Ok(c) => c,
                    Err(e) => return read_failed(&sidecar, &e),
                };
                opened = side;
                encoding = Some(coding);
                break;
            }
            Err(OpenError::NotFound) => cache.insert(&job.base, key, Known::Absent),
            // A directory, a FIFO, a symlink leading out: not a sidecar.
            _ => {}
        }
    }
    let size = opened.meta.len();
    let validators = match &cached {
        Some(c) => c.validators.clone(),
        None => Validators::new(std::os::unix::fs::MetadataExt::mtime(&opened.meta), size),
    };
    let repr = Representation {
        size: match &cached {
            Some(c) => c.size.clone(),
            None => Size::new(size),
        },
        validators,
        content_type: mime::content_type(uri),
        encoding,
    };
    let decision = decide(&job.facts, &repr.validators, size, job.now);
    let reply = response::reply(&repr, &decision);
    let body = if job.facts.access == Access::Head || reply.segments.is_empty() {
        Body::empty()
    } else if let Some(c) = cached {
        match response::from_memory(&reply.segments, &c.content) {
            Some(bytes) => Body::full(bytes),
            None => return Found::Status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    } else {
        let sendfile = job
            .sendfile
            .as_ref()
            .and_then(|s| s.for_type(&repr.content_type));
        match stream(opened, &reply.segments, sendfile) {
            Ok(body) => body,
            Err(e) => return read_failed(rel, &e),
        }
    };
    Found::File(reply, body)
}

/// Reads a small file whole and caches it; `None` for files too large to
/// cache (they are streamed).
fn remember(
    cache: &FileCache,
    base: &Path,
    key: PathBuf,
    opened: &mut Opened,
) -> std::io::Result<Option<Arc<CachedFile>>> {
    let size = opened.meta.len();
    if !cache.fits(size) {
        return Ok(None);
    }
    let content = read_at(&opened.file, 0, size)?;
    let file = Arc::new(CachedFile::new(
        FileId::of(&opened.meta),
        Validators::new(std::os::unix::fs::MetadataExt::mtime(&opened.meta), size),
        content,
    ));
    cache.insert(base, key, Known::File(file.clone()));
    Ok(Some(file))
}

/// A streamed body whose first chunk is read now, in this hop: a file up to
/// [`CHUNK`] bytes is then complete and closed before the hop returns.
/// Larger files on a connection that takes `sendfile` are not read here
/// at all: the kernel sends them from the page cache.
fn stream(
    opened: Opened,
    segments: &[Segment],
    sendfile: Option<crate::proxy::sendfile::SendfileHandle>,
) -> std::io::Result<Body> {
    let mut segments = segments.to_vec();
    if let Some(i) = segments
        .iter()
        .position(|s| matches!(s, Segment::File { .. }))
    {
        if let Segment::File { offset, len } = segments[i]
            && (sendfile.is_none() || len <= CHUNK)
        {
            let n = len.min(CHUNK);
            let head = read_at(&opened.file, offset, n)?;
            segments[i] = Segment::Bytes(head);
            if len > n {
                segments.insert(
                    i + 1,
                    Segment::File {
                        offset: offset + n,
                        len: len - n,
                    },
                );
            }
        }
    }
    if segments.iter().all(|s| matches!(s, Segment::Bytes(_))) {
        let bytes = response::from_memory(&segments, &bytes::Bytes::new())
            .ok_or_else(|| std::io::Error::other("segment bounds"))?;
        return Ok(Body::full(bytes));
    }
    let body = FileBody::new(Some(opened.file), segments);
    Ok(Body::stream(match sendfile {
        Some(handle) => body.with_sendfile(handle),
        None => body,
    }))
}

fn refused(base: &std::path::Path, e: OpenError) -> StatusCode {
    if let OpenError::Io(io) = &e {
        tracing::warn!(base = %base.display(), error = %io, "static file lookup");
    }
    e.status()
}

fn read_failed(rel: &RelPath, e: &std::io::Error) -> Found {
    tracing::warn!(path = rel.as_fs_str(), error = %e, "reading static file");
    Found::Status(StatusCode::INTERNAL_SERVER_ERROR)
}

fn push_query(uri: &mut String, query: Option<&str>) {
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
}
