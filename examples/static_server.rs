//! A minimal HTTP/1.1 server around `static_files::serve`, to measure it
//! against nginx with a load generator (see `benches/static_files.rs` for
//! the in-process numbers).
//!
//! ```text
//! cargo run --release --example static_server -- 127.0.0.1:8081 /srv/www [worker-threads]
//! wrk -t1 -c50 -d10s --latency http://127.0.0.1:8081/1k.bin
//! ```
//!
//! It follows internal redirects (index files) the way the real handler
//! will, and has no logging, like an nginx with `access_log off`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use vigil::config::{FileBase, StaticSite};
use vigil::proxy::body::Body;
use vigil::proxy::static_files::{Outcome, serve};
use vigil::proxy::uri_path::NormalizedPath;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()?;
    let root = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let workers: usize = args.next().map(|w| w.parse()).transpose()?.unwrap_or(2);
    let site = Arc::new(StaticSite {
        base: FileBase::Root(root),
        index: vec!["index.html".into()],
        try_files: vec![],
        fallback: None,
        expires: None,
        gzip_static: false,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "serving {} on {addr} with {workers} worker threads",
            site_root(&site)
        );
        loop {
            // accept(2) fails transiently (ECONNABORTED when a client
            // resets first, EMFILE under fd pressure): keep serving.
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let site = site.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let site = site.clone();
                    async move { Ok::<_, Infallible>(handle(&site, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn handle(site: &StaticSite, req: Request<Incoming>) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let mut path = parts.uri.path().to_owned();
    for _ in 0..10 {
        let Ok(normalized) = NormalizedPath::parse(&path) else {
            return status(StatusCode::BAD_REQUEST);
        };
        match serve(site, &parts, &normalized, None, None).await {
            Outcome::Response(r) => return r,
            Outcome::Redirect(uri) => path = uri.split('?').next().unwrap_or("/").to_owned(),
            Outcome::Named(_) => return status(StatusCode::NOT_FOUND),
        }
    }
    status(StatusCode::INTERNAL_SERVER_ERROR)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

fn site_root(site: &StaticSite) -> String {
    match &site.base {
        FileBase::Root(p) | FileBase::Alias { dir: p, .. } => p.display().to_string(),
    }
}
