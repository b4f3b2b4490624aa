//! The file cache: answers equal fresh ones, changes are seen, symlinks
//! under each confinement, nothing carried across roots.

use super::*;

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
