//! `static_files::serve` in-process, without the network: the cost of the
//! decisions, the file-system work and the body, per request.
//!
//! ```text
//! cargo bench --bench static_files
//! ```
//!
//! - `cached_1k`: a small file, answered from the open-file cache on the
//!   async thread (one `stat`), the case the 1 KiB benchmark exercises.
//! - `cached_1k_304`: the same with a matching If-None-Match.
//! - `lookup_64k`: a file too large for the cache: one blocking-pool hop
//!   (open, fstat, read), the body complete in that hop.
//! - `stream_1m`: a 1 MiB file: the hop plus streamed 128 KiB chunks.
//! - `index_redirect`: `/` → the index file, found in a hop.
//! - `blocking_hop` / `stat`: the two primitives the design trades off.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use http_body_util::BodyExt;
use vigil::config::{FileBase, StaticSite};
use vigil::proxy::static_files::{Outcome, serve};
use vigil::proxy::uri_path::NormalizedPath;

fn site(root: &std::path::Path) -> StaticSite {
    StaticSite {
        base: FileBase::Root(root.to_path_buf()),
        index: vec!["index.html".into()],
        try_files: vec![],
        fallback: None,
        expires: None,
        gzip_static: false,
    }
}

async fn fetch(site: &StaticSite, path: &str, headers: &[(&str, &str)]) -> usize {
    let mut b = Request::builder().method(Method::GET).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).expect("request").into_parts();
    let path = NormalizedPath::parse(parts.uri.path()).expect("path");
    match serve(site, &parts, &path, None, None).await {
        Outcome::Response(r) => r
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .len(),
        Outcome::Redirect(u) => u.len(),
        Outcome::Named(n) => n.len(),
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    std::fs::write(root.join("1k.bin"), vec![1u8; 1024]).expect("write");
    std::fs::write(root.join("64k.bin"), vec![2u8; 64 * 1024]).expect("write");
    std::fs::write(root.join("1m.bin"), vec![3u8; 1024 * 1024]).expect("write");
    std::fs::write(root.join("index.html"), "<h1>hi</h1>").expect("write");
    let site = site(root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Warm the cache and learn the ETag.
    rt.block_on(fetch(&site, "/1k.bin", &[]));
    let etag = {
        let meta = std::fs::metadata(root.join("1k.bin")).expect("meta");
        let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
        format!("\"{mtime:x}-400\"")
    };

    let mut g = c.benchmark_group("static_files");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("cached_1k", |b| {
        b.iter(|| rt.block_on(fetch(&site, "/1k.bin", &[])))
    });
    g.bench_function("cached_1k_304", |b| {
        b.iter(|| rt.block_on(fetch(&site, "/1k.bin", &[("if-none-match", &etag)])))
    });
    g.bench_function("lookup_64k", |b| {
        b.iter(|| rt.block_on(fetch(&site, "/64k.bin", &[])))
    });
    g.bench_function("stream_1m", |b| {
        b.iter(|| rt.block_on(fetch(&site, "/1m.bin", &[])))
    });
    g.bench_function("index_redirect", |b| {
        b.iter(|| rt.block_on(fetch(&site, "/", &[])))
    });
    g.bench_function("blocking_hop", |b| {
        b.iter(|| {
            rt.block_on(async {
                tokio::task::spawn_blocking(|| black_box(1))
                    .await
                    .expect("join")
            })
        })
    });
    let file = root.join("1k.bin");
    g.bench_function("stat", |b| {
        b.iter(|| std::fs::metadata(black_box(&file)).expect("stat").len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
