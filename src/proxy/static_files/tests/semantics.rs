//! HTTP semantics of served files: conditionals, ranges, large files,
//! gzip_static, expires.

use super::*;

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
