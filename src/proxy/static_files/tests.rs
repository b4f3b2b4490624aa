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

#[tokio::test]
async fn conditional_requests() {
    let s = site();
    let mut st = static_site(&s);
    st.expires = Some(Expires::After(Duration::from_secs(60)));
    let first = get(&st, "/hello.txt").await;
    let etag = first.headers[ETAG].to_str().unwrap().to_owned();
    let lm = first.headers[LAST_MODIFIED].to_str().unwrap().to_owned();
    let r = get_h(&st, "/hello.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.headers[ETAG], etag.as_str());
    assert_eq!(r.headers[LAST_MODIFIED], lm.as_str());
    assert_eq!(r.headers[CACHE_CONTROL], "max-age=60");
    assert!(r.headers.contains_key(EXPIRES));
    let weak_list = format!("\"x\", W/{etag}");
    assert_eq!(
        get_h(&st, "/hello.txt", &[("if-none-match", &weak_list)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get_h(&st, "/hello.txt", &[("if-none-match", "*")])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get_h(&st, "/hello.txt", &[("if-modified-since", &lm)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    let stale = [
        ("if-none-match", "\"old\""),
        ("if-modified-since", lm.as_str()),
    ];
    assert_eq!(
        get_h(&st, "/hello.txt", &stale).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_h(&st, "/hello.txt", &[("if-match", "\"old\"")])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        get_h(&st, "/hello.txt", &[("if-match", &etag)])
            .await
            .status,
        StatusCode::OK
    );
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        get_h(&st, "/hello.txt", &[("if-unmodified-since", old)])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // The same on a streamed (uncached) file.
    let big = get(&st, "/big.bin").await;
    let etag = big.headers[ETAG].to_str().unwrap();
    assert_eq!(
        get_h(&st, "/big.bin", &[("if-none-match", etag)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
}

#[tokio::test]
async fn ranges() {
    let s = site();
    let st = static_site(&s);
    let r = get_h(&st, "/hello.txt", &[("range", "bytes=0-4")]).await;
    assert_eq!(
        (r.status, r.body.as_ref()),
        (StatusCode::PARTIAL_CONTENT, &b"hello"[..])
    );
    assert_eq!(r.headers[CONTENT_RANGE], "bytes 0-4/11");
    assert_eq!(r.headers[CONTENT_LENGTH], "5");
    assert_eq!(
        get_h(&st, "/hello.txt", &[("range", "bytes=-5")])
            .await
            .body,
        "world"
    );
    assert_eq!(
        get_h(&st, "/hello.txt", &[("range", "bytes=6-")])
            .await
            .body,
        "world"
    );
    let r = get_h(&st, "/hello.txt", &[("range", "bytes=11-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers[CONTENT_RANGE], "bytes */11");
    let r = get_h(&st, "/hello.txt", &[("range", "bytes=x-y")]).await;
    assert_eq!(
        (r.status, r.body.as_ref()),
        (StatusCode::OK, &b"hello world"[..])
    );
    let r = get_h(
        &st,
        "/hello.txt",
        &[("range", "bytes=0-4"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let etag = r.headers[ETAG].to_str().unwrap().to_owned();
    let r = get_h(
        &st,
        "/hello.txt",
        &[("range", "bytes=0-4"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let r = get_h(&st, "/hello.txt", &[("range", "bytes=0-0,-1")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let ct = r.headers[CONTENT_TYPE].to_str().unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let want = format!(
        "\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/11\r\n\r\nh\
         \r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-10/11\r\n\r\nd\
         \r\n--{boundary}--\r\n"
    );
    assert_eq!(r.body, want.as_bytes());
    assert_eq!(r.headers[CONTENT_LENGTH], want.len().to_string().as_str());
}

#[tokio::test]
async fn large_files_stream_whole_and_in_ranges() {
    let s = site();
    let st = static_site(&s);
    let content = big_content();
    let size = content.len() as u64;
    let r = get(&st, "/big.bin").await;
    assert_eq!(r.headers[CONTENT_LENGTH], size.to_string().as_str());
    assert_eq!(r.headers[CONTENT_TYPE], "application/octet-stream");
    assert!(r.body == content);
    let (a, b) = (CHUNK - 10, CHUNK + 5000);
    let r = get_h(&st, "/big.bin", &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert!(r.body == content[a as usize..=b as usize]);
    let r = get_h(&st, "/big.bin", &[("range", "bytes=0-1,-2")]).await;
    let body = r.body;
    assert!(body.windows(2).any(|w| w == &content[..2]));
    assert!(body.ends_with(b"--\r\n"));
    assert_eq!(r.headers[CONTENT_LENGTH], body.len().to_string().as_str());
}

#[tokio::test]
async fn gzip_static_serves_sidecars() {
    let s = site();
    let mut st = static_site(&s);
    st.gzip_static = true;
    let identity = get(&st, "/app.js").await;
    assert_eq!(identity.body, "console.log('identity')");
    assert_eq!(identity.headers[VARY], "Accept-Encoding");
    assert!(!identity.headers.contains_key(CONTENT_ENCODING));
    let br = get_h(&st, "/app.js", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(br.body, "BR");
    assert_eq!(br.headers[CONTENT_ENCODING], "br");
    assert_eq!(br.headers[CONTENT_TYPE], "application/javascript");
    assert_eq!(br.headers[CONTENT_LENGTH], "2");
    assert_eq!(br.headers[VARY], "Accept-Encoding");
    assert_ne!(br.headers[ETAG], identity.headers[ETAG]);
    let gz = get_h(&st, "/app.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.body, "GZ-BYTES");
    assert_eq!(gz.headers[CONTENT_ENCODING], "gzip");
    assert_eq!(
        get_h(&st, "/app.js", &[("accept-encoding", "br;q=0, gzip")])
            .await
            .body,
        "GZ-BYTES"
    );
    assert_eq!(
        get_h(&st, "/app.js", &[("accept-encoding", "gzip;q=0")])
            .await
            .body,
        "console.log('identity')"
    );
    assert_eq!(
        get_h(&st, "/style.css", &[("accept-encoding", "br, gzip")])
            .await
            .body,
        "GZ-CSS"
    );
    assert_eq!(
        get_h(&st, "/hello.txt", &[("accept-encoding", "br, gzip")])
            .await
            .body,
        "hello world"
    );
    // 304 for the sidecar's own ETag, with Vary.
    let etag = br.headers[ETAG].to_str().unwrap();
    let r = get_h(
        &st,
        "/app.js",
        &[("accept-encoding", "br"), ("if-none-match", etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers[VARY], "Accept-Encoding");
    // Without gzip_static the sidecars are ignored.
    st.gzip_static = false;
    assert_eq!(
        get_h(&st, "/app.js", &[("accept-encoding", "br")])
            .await
            .body,
        "console.log('identity')"
    );
}

#[tokio::test]
async fn expires_headers() {
    let s = site();
    let mut st = static_site(&s);
    st.expires = Some(Expires::Epoch);
    let r = get(&st, "/hello.txt").await;
    assert_eq!(r.headers[CACHE_CONTROL], "no-cache");
    assert_eq!(r.headers[EXPIRES], "Thu, 01 Jan 1970 00:00:01 GMT");
    st.expires = Some(Expires::Max);
    assert_eq!(
        get(&st, "/hello.txt").await.headers[CACHE_CONTROL],
        "max-age=315360000"
    );
    assert_eq!(
        get(&st, "/docs").await.headers[CACHE_CONTROL],
        "max-age=315360000"
    );
    assert!(
        !get(&st, "/missing")
            .await
            .headers
            .contains_key(CACHE_CONTROL)
    );
}

/// Runs every request twice on one cache: the second answer comes from the
/// cache and must be the same.
#[tokio::test]
async fn cached_answers_equal_fresh_ones() {
    let s = site();
    let mut st = static_site(&s);
    st.gzip_static = true;
    st.expires = Some(Expires::Max);
    let cache = fresh_cache();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/hello.txt", &[]),
        ("/hello.txt", &[("range", "bytes=1-3")]),
        ("/hello.txt", &[("range", "bytes=1-3,5-6")]),
        ("/hello.txt", &[("range", "bytes=50-")]),
        ("/hello.txt", &[("if-none-match", "*")]),
        ("/app.js", &[("accept-encoding", "br")]),
        ("/app.js", &[("accept-encoding", "gzip")]),
        ("/app.js", &[]),
        ("/style.css", &[("accept-encoding", "br, gzip")]),
    ];
    for (uri, headers) in cases {
        let mut answers = Vec::new();
        for _ in 0..2 {
            let Served::Response(r) =
                request_with(cache, Confinement::detect(), &st, Method::GET, uri, headers).await
            else {
                panic!()
            };
            let mut h = r.headers.clone();
            h.remove(CONTENT_TYPE)
                .filter(|ct| !ct.to_str().unwrap().starts_with("multipart"));
            answers.push((
                r.status,
                h,
                if r.body.len() > 100 {
                    Bytes::new()
                } else {
                    r.body
                },
            ));
        }
        if headers
            .iter()
            .any(|(_, v)| v.contains(',') && v.starts_with("bytes"))
        {
            assert_eq!(answers[0].0, answers[1].0);
            continue; // multipart boundaries differ
        }
        assert_eq!(answers[0], answers[1], "{uri} {headers:?}");
    }
    assert!(cache.get(&s.root(), &s.root().join("hello.txt")).is_some());
    assert!(matches!(
        cache.get(&s.root(), &s.root().join("app.js.br")),
        Some(Known::File(_))
    ));
    assert!(matches!(
        cache.get(&s.root(), &s.root().join("style.css.br")),
        Some(Known::Absent)
    ));
}

#[tokio::test]
async fn a_changed_file_is_seen_at_once() {
    let s = site();
    let mut st = static_site(&s);
    st.gzip_static = true;
    let cache = fresh_cache();
    let fetch = |headers: &'static [(&'static str, &'static str)]| {
        let st = st.clone();
        async move {
            match request_with(
                cache,
                Confinement::detect(),
                &st,
                Method::GET,
                "/hello.txt",
                headers,
            )
            .await
            {
                Served::Response(r) => r.body,
                _ => panic!(),
            }
        }
    };
    assert_eq!(fetch(&[]).await, "hello world");
    assert_eq!(fetch(&[]).await, "hello world");
    s.write("hello.txt", "changed");
    assert_eq!(fetch(&[]).await, "changed");
    // Replaced by rename with content of the same size.
    std::fs::write(s.root().join("new"), "CHANGED").unwrap();
    std::fs::rename(s.root().join("new"), s.root().join("hello.txt")).unwrap();
    assert_eq!(fetch(&[]).await, "CHANGED");
    // A sidecar appearing or disappearing.
    assert_eq!(fetch(&[("accept-encoding", "gzip")]).await, "CHANGED");
    s.write("hello.txt.gz", "GZ");
    assert_eq!(fetch(&[("accept-encoding", "gzip")]).await, "GZ");
    std::fs::remove_file(s.root().join("hello.txt.gz")).unwrap();
    assert_eq!(fetch(&[("accept-encoding", "gzip")]).await, "CHANGED");
    // Swapped for a symlink that leads out of the root.
    std::fs::remove_file(s.root().join("hello.txt")).unwrap();
    symlink("../secret.txt", s.root().join("hello.txt")).unwrap();
    let Served::Response(r) = request_with(
        cache,
        Confinement::detect(),
        &st,
        Method::GET,
        "/hello.txt",
        &[],
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn symlinks_under_each_confinement() {
    let s = site();
    let st = static_site(&s);
    symlink(s.root().join("docs"), s.root().join("abs_docs")).unwrap();
    symlink(s.tmp.path().join("assets"), s.root().join("abs_assets")).unwrap();
    for how in [Confinement::Canonical, Confinement::detect()] {
        let get = |uri: &'static str| {
            let st = st.clone();
            async move {
                match request_with(fresh_cache(), how, &st, Method::GET, uri, &[]).await {
                    Served::Response(r) => (r.status, r.body),
                    _ => panic!(),
                }
            }
        };
        assert_eq!(
            get("/link_in").await,
            (StatusCode::OK, Bytes::from("hello world")),
            "{how:?}"
        );
        assert_eq!(
            get("/abs_docs/index.html").await,
            (StatusCode::OK, Bytes::from("<h1>docs</h1>"))
        );
        assert_eq!(get("/link_out").await.0, StatusCode::FORBIDDEN);
        assert_eq!(get("/abs_assets/logo.png").await.0, StatusCode::FORBIDDEN);
    }
}

#[test]
fn root_path_helper() {
    // The fixture helpers themselves: paths stay inside the tempdir.
    let s = site();
    assert!(s.root().starts_with(s.tmp.path()));
    assert!(Path::new(&s.root()).join("hello.txt").exists());
}

fn cache_answer(
    cache: &FileCache,
    site: &StaticSite,
    uri: &str,
    headers: &[(&str, &str)],
) -> Option<StatusCode> {
    let mut b = Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let facts = RequestFacts::new(&parts, site.gzip_static);
    let plan = Plan::new(&site.base, &site.try_files, parts.uri.path(), None);
    let location = LocationHeaders {
        expires: None,
        vary_accept_encoding: site.gzip_static,
    };
    from_cache(cache, site, &plan, &facts, location, SystemTime::now()).map(|r| r.status())
}

#[tokio::test]
async fn hits_skip_the_lookup_until_something_changes() {
    let s = site();
    let mut st = static_site(&s);
    st.gzip_static = true;
    st.try_files = vec![TryFile("$uri".into()), TryFile("/index.html".into())];
    let cache = fresh_cache();
    let gzip = [("accept-encoding", "gzip")];
    assert_eq!(cache_answer(cache, &st, "/app.js", &gzip), None);
    request_with(
        cache,
        Confinement::detect(),
        &st,
        Method::GET,
        "/app.js",
        &gzip,
    )
    .await;
    assert_eq!(
        cache_answer(cache, &st, "/app.js", &gzip),
        Some(StatusCode::OK)
    );
    assert_eq!(
        cache_answer(
            cache,
            &st,
            "/app.js",
            &[("accept-encoding", "gzip"), ("range", "bytes=0-1")]
        ),
        Some(StatusCode::PARTIAL_CONTENT)
    );
    // The br sidecar was never looked at: that needs the lookup.
    assert_eq!(
        cache_answer(cache, &st, "/app.js", &[("accept-encoding", "br")]),
        None
    );
    // Large files are not cached; directories never are.
    request_with(
        cache,
        Confinement::detect(),
        &st,
        Method::GET,
        "/big.bin",
        &[],
    )
    .await;
    assert_eq!(cache_answer(cache, &st, "/big.bin", &[]), None);
    // An index found by the lookup is cached for the redirected request.
    let st_plain = static_site(&s);
    request_with(
        cache,
        Confinement::detect(),
        &st_plain,
        Method::GET,
        "/docs/",
        &[],
    )
    .await;
    assert_eq!(
        cache_answer(cache, &st_plain, "/docs/index.html", &[]),
        Some(StatusCode::OK)
    );
    // A change sends the next request to the lookup.
    s.write("app.js.gz", "NEW-GZ-BYTES");
    assert_eq!(cache_answer(cache, &st, "/app.js", &gzip), None);
}

/// A file cached by a site whose root is wider must not leak, through the
/// shared cache, to a site for which the same path leads out of its root.
#[tokio::test]
async fn the_cache_does_not_carry_files_across_roots() {
    let s = site();
    let narrow = static_site(&s);
    let mut wide = static_site(&s);
    wide.base = FileBase::Root(s.tmp.path().to_path_buf());
    let cache = fresh_cache();
    let how = Confinement::detect();
    // For the wide site, root/link_out -> ../secret.txt stays inside.
    let Served::Response(r) =
        request_with(cache, how, &wide, Method::GET, "/root/link_out", &[]).await
    else {
        panic!()
    };
    assert_eq!(r.body, "TOP-SECRET");
    // For the narrow site the same file path leads out: refused, cached or not.
    for _ in 0..2 {
        let Served::Response(r) =
            request_with(cache, how, &narrow, Method::GET, "/link_out", &[]).await
        else {
            panic!()
        };
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.body.is_empty());
    }
}
