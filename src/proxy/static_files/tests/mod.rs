//! Behaviour of the whole pipeline on a real directory tree, through
//! `serve_with` (own cache, each confinement strategy).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, EXPIRES, LAST_MODIFIED, LOCATION, VARY,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;

use super::cache::Limits;
use super::file_body::CHUNK;
use super::*;
use crate::config::{Expires, FileBase, TryFile};

mod cache;
mod semantics;

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn big_content() -> Vec<u8> {
    (0..(2 * CHUNK + 1000))
        .map(|i| (i * 7 % 256) as u8)
        .collect()
}

/// root/: hello.txt, index.html, about.html, app.js(+.gz +.br),
/// style.css(+.gz), big.bin (> CHUNK), docs/index.html, noindex/a.txt,
/// fifo, link_in -> hello.txt, link_out -> ../secret.txt
/// assets/: logo.png; secret.txt next to them.
fn site() -> Site {
    let s = Site {
        tmp: tempfile::tempdir().unwrap(),
    };
    s.write("hello.txt", "hello world");
    s.write("index.html", "<h1>home</h1>");
    s.write("about.html", "<h1>about</h1>");
    s.write("app.js", "console.log('identity')");
    s.write("app.js.gz", "GZ-BYTES");
    s.write("app.js.br", "BR");
    s.write("style.css", "body{}");
    s.write("style.css.gz", "GZ-CSS");
    s.write("big.bin", big_content());
    s.write("docs/index.html", "<h1>docs</h1>");
    s.write("noindex/a.txt", "a");
    s.write("a b/c%2e.txt", "encoded");
    std::fs::create_dir_all(s.tmp.path().join("assets")).unwrap();
    std::fs::write(s.tmp.path().join("assets/logo.png"), "PNG").unwrap();
    std::fs::write(s.tmp.path().join("secret.txt"), "TOP-SECRET").unwrap();
    symlink("hello.txt", s.root().join("link_in")).unwrap();
    symlink("../secret.txt", s.root().join("link_out")).unwrap();
    let fifo = std::ffi::CString::new(s.root().join("fifo").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    s
}

fn static_site(s: &Site) -> StaticSite {
    StaticSite {
        base: FileBase::Root(s.root()),
        index: vec!["index.html".into()],
        try_files: vec![],
        fallback: None,
        expires: None,
        gzip_static: false,
    }
}

fn fresh_cache() -> &'static FileCache {
    Box::leak(Box::new(FileCache::new(Limits::DEFAULT)))
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

enum Served {
    Response(Got),
    Named(String),
    Redirect(String),
}

async fn request_with(
    cache: &'static FileCache,
    how: Confinement,
    site: &StaticSite,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Served {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let path = NormalizedPath::parse(parts.uri.path()).unwrap();
    match serve_with(cache, how, site, &parts, &path, None).await {
        Outcome::Response(r) => {
            let (head, body) = r.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Served::Response(Got {
                status: head.status,
                headers: head.headers,
                body,
            })
        }
        Outcome::Named(n) => Served::Named(n),
        Outcome::Redirect(u) => Served::Redirect(u),
    }
}

async fn get_h(site: &StaticSite, uri: &str, headers: &[(&str, &str)]) -> Got {
    match request_with(
        fresh_cache(),
        Confinement::detect(),
        site,
        Method::GET,
        uri,
        headers,
    )
    .await
    {
        Served::Response(g) => g,
        Served::Named(n) => panic!("{uri}: named {n}"),
        Served::Redirect(u) => panic!("{uri}: redirect {u}"),
    }
}

async fn get(site: &StaticSite, uri: &str) -> Got {
    get_h(site, uri, &[]).await
}

async fn outcome(site: &StaticSite, method: Method, uri: &str) -> Served {
    request_with(fresh_cache(), Confinement::detect(), site, method, uri, &[]).await
}

#[tokio::test]
async fn serves_a_file_with_nginx_headers() {
    let s = site();
    let st = static_site(&s);
    let r = get(&st, "/hello.txt").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "hello world");
    assert_eq!(r.headers[CONTENT_TYPE], "text/plain");
    assert_eq!(r.headers[CONTENT_LENGTH], "11");
    assert_eq!(r.headers[ACCEPT_RANGES], "bytes");
    let meta = std::fs::metadata(s.root().join("hello.txt")).unwrap();
    let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
    assert_eq!(r.headers[ETAG], format!("\"{mtime:x}-b\"").as_str());
    let lm = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(mtime as u64));
    assert_eq!(r.headers[LAST_MODIFIED], lm.as_str());
    assert!(!r.headers.contains_key(VARY));
    assert!(!r.headers.contains_key(CACHE_CONTROL));
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let s = site();
    let st = static_site(&s);
    for uri in ["/hello.txt", "/big.bin"] {
        let Served::Response(r) = request_with(
            fresh_cache(),
            Confinement::detect(),
            &st,
            Method::HEAD,
            uri,
            &[],
        )
        .await
        else {
            panic!()
        };
        let full = get(&st, uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
        assert_eq!(r.headers, full.headers, "{uri}");
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let s = site();
    let st = static_site(&s);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let Served::Response(r) = outcome(&st, method, "/hello.txt").await else {
            panic!()
        };
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers[ALLOW], "GET, HEAD");
    }
}

#[tokio::test]
async fn missing_special_and_misnamed_files() {
    let s = site();
    let st = static_site(&s);
    assert_eq!(get(&st, "/missing.txt").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&st, "/hello.txt/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&st, "/hello.txt/x").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&st, "/fifo").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&st, "/link_in").await.body, "hello world");
    assert_eq!(get(&st, "/link_out").await.status, StatusCode::FORBIDDEN);
    // A decoded path is used as is: "a b/c%2e.txt" is a real file name.
    assert_eq!(get(&st, "/a%20b/c%252e.txt").await.body, "encoded");
    let mut gone = static_site(&s);
    gone.base = FileBase::Root(s.tmp.path().join("no-such-root"));
    assert_eq!(get(&gone, "/hello.txt").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn directories_redirect_index_or_forbid() {
    let s = site();
    let st = static_site(&s);
    let r = get(&st, "/docs").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers[LOCATION], "/docs/");
    let r = get(&st, "/docs?a=1&b").await;
    assert_eq!(r.headers[LOCATION], "/docs/?a=1&b");
    let r = get(&st, "/a%20b").await;
    assert_eq!(r.headers[LOCATION], "/a%20b/");
    assert!(
        matches!(outcome(&st, Method::GET, "/docs/").await, Served::Redirect(u) if u == "/docs/index.html")
    );
    assert!(
        matches!(outcome(&st, Method::GET, "/docs/?x=1").await, Served::Redirect(u) if u == "/docs/index.html?x=1")
    );
    assert!(
        matches!(outcome(&st, Method::GET, "/").await, Served::Redirect(u) if u == "/index.html")
    );
    assert_eq!(get(&st, "/noindex/").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&st, "/missing-dir/").await.status,
        StatusCode::NOT_FOUND
    );
    // First existing index wins; an absolute last index is a redirect.
    let mut st2 = static_site(&s);
    st2.index = vec!["none.html".into(), "a.txt".into()];
    assert!(
        matches!(outcome(&st2, Method::GET, "/noindex/").await, Served::Redirect(u) if u == "/noindex/a.txt")
    );
    st2.index = vec!["none.html".into(), "/fallback.html".into()];
    assert!(
        matches!(outcome(&st2, Method::GET, "/noindex/").await, Served::Redirect(u) if u == "/fallback.html")
    );
}

#[tokio::test]
async fn alias_maps_below_the_prefix() {
    let s = site();
    let mut st = static_site(&s);
    st.base = FileBase::Alias {
        prefix: "/static/".into(),
        dir: s.tmp.path().join("assets"),
    };
    let r = get(&st, "/static/logo.png").await;
    assert_eq!((r.status, r.body.as_ref()), (StatusCode::OK, &b"PNG"[..]));
    assert_eq!(r.headers[CONTENT_TYPE], "image/png");
    st.base = FileBase::Alias {
        prefix: "/static".into(),
        dir: s.tmp.path().join("assets"),
    };
    assert_eq!(get(&st, "/static").await.headers[LOCATION], "/static/");
    assert_eq!(get(&st, "/static/logo.png").await.body, "PNG");
    assert_eq!(
        get(&st, "/static../secret.txt").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&st, "/staticlogo.png").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn try_files_picks_the_first_existing_candidate() {
    let s = site();
    let mut st = static_site(&s);
    st.try_files = vec![
        TryFile("$uri".into()),
        TryFile("$uri.html".into()),
        TryFile("$uri/".into()),
    ];
    st.fallback = Some(TryFallback::Uri("/index.html".into()));
    assert_eq!(get(&st, "/hello.txt").await.body, "hello world");
    let r = get(&st, "/about").await;
    assert_eq!(r.body, "<h1>about</h1>");
    assert_eq!(r.headers[CONTENT_TYPE], "text/html");
    // `$uri/` matches the directory; nginx then adds the slash, or indexes.
    assert_eq!(get(&st, "/docs").await.headers[LOCATION], "/docs/");
    assert!(
        matches!(outcome(&st, Method::GET, "/docs/").await, Served::Redirect(u) if u == "/docs/index.html")
    );
    assert_eq!(get(&st, "/noindex/").await.status, StatusCode::FORBIDDEN);
    // Nothing exists: the fallback URI; `$uri` does not match directories
    // and `$uri/` does not match files.
    assert!(
        matches!(outcome(&st, Method::GET, "/nothing").await, Served::Redirect(u) if u == "/index.html")
    );
    st.try_files = vec![TryFile("$uri/".into())];
    assert!(matches!(
        outcome(&st, Method::GET, "/hello.txt").await,
        Served::Redirect(_)
    ));
    // A FIFO or a symlink leading out counts as missing.
    st.try_files = vec![TryFile("$uri".into())];
    assert!(matches!(
        outcome(&st, Method::GET, "/fifo").await,
        Served::Redirect(_)
    ));
    assert!(matches!(
        outcome(&st, Method::GET, "/link_out").await,
        Served::Redirect(_)
    ));
}

#[tokio::test]
async fn try_files_fallbacks() {
    let s = site();
    let mut st = static_site(&s);
    st.try_files = vec![TryFile("$uri".into())];
    st.fallback = Some(TryFallback::Status(StatusCode::NOT_FOUND));
    assert_eq!(get(&st, "/nothing").await.status, StatusCode::NOT_FOUND);
    st.fallback = Some(TryFallback::Named("@app".into()));
    assert!(matches!(outcome(&st, Method::GET, "/nothing").await, Served::Named(n) if n == "@app"));
    // Other methods still reach the named location (the static-or-proxy
    // idiom), and get 405 only when a file would be served.
    assert!(matches!(
        outcome(&st, Method::POST, "/api/login").await,
        Served::Named(_)
    ));
    let Served::Response(r) = outcome(&st, Method::POST, "/hello.txt").await else {
        panic!()
    };
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    st.fallback = Some(TryFallback::Uri("/index.php?q=$uri&$args".into()));
    assert!(matches!(
        outcome(&st, Method::GET, "/a%20b/missing?x=1").await,
        Served::Redirect(u) if u == "/index.php?q=/a%20b/missing&x=1"
    ));
    st.fallback = None;
    assert_eq!(get(&st, "/nothing").await.status, StatusCode::NOT_FOUND);
}
