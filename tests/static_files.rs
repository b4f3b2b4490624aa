//! Static file serving through the public API, as the request handler
//! calls it: the path-traversal corpus, and a walk through the nginx
//! behaviours a ported config relies on.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use vigil::config::{FileBase, StaticSite, TryFallback, TryFile};
use vigil::proxy::static_files::{Outcome, serve};
use vigil::proxy::uri_path::NormalizedPath;

const SECRET: &str = "VIGIL-SECRET-7f3a9c";

/// tmp/
///   secret.txt, private/secret.txt, assets_private/secret.txt   (outside)
///   assets/a.css                                                 (alias dir)
///   root/ pub.txt, pub.txt.gz -> ../secret.txt, index.html, sub/ok.txt,
///         link_etc -> /etc, link_secret -> ../secret.txt,
///         link_secret_abs -> <tmp>/secret.txt, sibling -> ../private,
///         sibling_abs -> <tmp>/private, updir -> .., chain1 -> chain2 -> ../secret.txt,
///         proc -> /proc/self/root, sub/parent_link -> ../../private, loop -> loop,
///         idx/index.html -> ../../secret.txt
struct Tree {
    tmp: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let root = t.join("root");
        for dir in [
            "root/sub",
            "root/idx",
            "private",
            "assets",
            "assets_private",
        ] {
            std::fs::create_dir_all(t.join(dir)).unwrap();
        }
        for file in [
            "secret.txt",
            "private/secret.txt",
            "assets_private/secret.txt",
        ] {
            std::fs::write(t.join(file), SECRET).unwrap();
        }
        std::fs::write(t.join("assets/a.css"), "a{}").unwrap();
        std::fs::write(root.join("pub.txt"), "public").unwrap();
        std::fs::write(root.join("index.html"), "public index").unwrap();
        std::fs::write(root.join("sub/ok.txt"), "ok").unwrap();
        let links: [(&str, PathBuf); 15] = [
            ("pub.txt.gz", "../secret.txt".into()),
            ("link_etc", "/etc".into()),
            ("link_secret", "../secret.txt".into()),
            ("link_secret_abs", t.join("secret.txt")),
            ("sibling", "../private".into()),
            ("sibling_abs", t.join("private")),
            ("updir", "..".into()),
            ("chain1", "chain2".into()),
            ("chain2", "../secret.txt".into()),
            ("proc", "/proc/self/root".into()),
            ("proc_fd", "/proc/self/fd".into()),
            ("sub/parent_link", "../../private".into()),
            ("loop", "loop".into()),
            ("idx/index.html", "../../secret.txt".into()),
            ("abs_root", root.clone()),
        ];
        for (link, target) in links {
            symlink(target, root.join(link)).unwrap();
        }
        Tree { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
}

fn site(base: FileBase) -> StaticSite {
    StaticSite {
        base,
        index: vec!["index.html".into()],
        try_files: vec![],
        fallback: None,
        expires: None,
        gzip_static: true,
    }
}

/// The request path is given raw, as it would come off the wire; the
/// request line is only used for its query, so it can hold bytes a `Uri`
/// would not accept (backslashes, overlong UTF-8...).
async fn fetch(site: &StaticSite, raw_path: &str) -> Vec<(StatusCode, Bytes)> {
    let (parts, ()) = Request::builder()
        .method(Method::GET)
        .uri("/")
        .header("accept-encoding", "br, gzip")
        .body(())
        .unwrap()
        .into_parts();
    let mut seen = Vec::new();
    let mut path = raw_path.to_owned();
    // Follow internal redirects (index, try_files URI) like the handler.
    for _ in 0..5 {
        let Ok(normalized) = NormalizedPath::parse(&path) else {
            seen.push((StatusCode::BAD_REQUEST, Bytes::new()));
            return seen;
        };
        match serve(site, &parts, &normalized, None, None).await {
            Outcome::Response(r) => {
                let (head, body) = r.into_parts();
                seen.push((head.status, body.collect().await.unwrap().to_bytes()));
                return seen;
            }
            Outcome::Redirect(uri) => path = uri.split('?').next().unwrap_or_default().to_owned(),
            Outcome::Named(_) => return seen,
        }
    }
    panic!("redirect loop for {raw_path}");
}

fn assert_refused(what: &str, raw: &str, seen: &[(StatusCode, Bytes)]) {
    for (status, body) in seen {
        let text = String::from_utf8_lossy(body);
        assert!(
            !text.contains(SECRET),
            "{what} {raw:?}: leaked the secret ({status})"
        );
        assert!(
            !text.contains("root:x:0:0"),
            "{what} {raw:?}: leaked /etc/passwd"
        );
    }
    let (last, _) = seen
        .last()
        .unwrap_or_else(|| panic!("{what} {raw:?}: no response"));
    assert!(
        matches!(last.as_u16(), 400 | 403 | 404),
        "{what} {raw:?}: expected 400/403/404, got {last}"
    );
}

#[tokio::test]
async fn traversal_corpus_never_leaves_the_root() {
    let tree = Tree::new();
    let root = site(FileBase::Root(tree.path("root")));
    // The harness must be able to serve what is legitimately there.
    assert_eq!(
        fetch(&root, "/sub/ok.txt").await,
        vec![(StatusCode::OK, Bytes::from("ok"))]
    );
    assert_eq!(
        fetch(&root, "/").await,
        vec![(StatusCode::OK, Bytes::from("public index"))]
    );

    let root_corpus = [
        // Plain, encoded and mixed dots and slashes.
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/./../secret.txt",
        "/sub/./../../secret.txt",
        "/%2fsecret.txt",
        "//secret.txt",
        "/secret.txt",
        // Double encoding: decoded once, the rest is a file name.
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/..%252fsecret.txt",
        "/%25%32%65%25%32%65/secret.txt",
        // Overlong UTF-8 and IIS-style encodings.
        "/%c0%ae%c0%ae/secret.txt",
        "/%c0%af..%c0%afsecret.txt",
        "/..%c0%afsecret.txt",
        "/%e0%80%ae%e0%80%ae/secret.txt",
        "/%c1%9c..%c1%9csecret.txt",
        "/%u002e%u002e/secret.txt",
        // Backslashes are file name bytes on Linux.
        "/..\\secret.txt",
        "/sub\\..\\..\\secret.txt",
        "/..%5csecret.txt",
        "/%5c..%5c..%5csecret.txt",
        "/%2e%2e%5csecret.txt",
        // Odd dot forms.
        "/....//secret.txt",
        "/.../secret.txt",
        "/..;/secret.txt",
        // NUL.
        "/%00/../secret.txt",
        "/pub.txt%00.html",
        "/secret.txt%00",
        // Symlinks leading out, in the last component or a parent.
        "/link_secret",
        "/link_secret_abs",
        "/link_etc/passwd",
        "/link_etc/hostname",
        "/link_etc/",
        "/sibling/secret.txt",
        "/sibling_abs/secret.txt",
        "/sibling",
        "/sibling/",
        "/updir/secret.txt",
        "/updir/private/secret.txt",
        "/chain1",
        "/chain2",
        "/sub/parent_link/secret.txt",
        "/abs_root/../secret.txt",
        "/abs_root/link_secret",
        "/loop",
        // /proc magic links.
        "/proc/etc/passwd",
        "/proc/self/root/etc/passwd",
        "/proc_fd/0",
        // An index file that is a symlink leading out.
        "/idx/",
        "/idx/index.html",
    ];
    for raw in root_corpus {
        assert_refused("root", raw, &fetch(&root, raw).await);
    }
    let mut count = root_corpus.len();

    // Alias prefix tricks: `location /static { alias <tmp>/assets/; }` and
    // the sibling-directory variant `alias <tmp>/assets` (no slash).
    let alias = site(FileBase::Alias {
        prefix: "/static".into(),
        dir: tree.path("assets/"),
    });
    assert_eq!(
        fetch(&alias, "/static/a.css").await,
        vec![(StatusCode::OK, Bytes::from("a{}"))]
    );
    let alias_sibling = site(FileBase::Alias {
        prefix: "/static".into(),
        dir: tree.path("assets"),
    });
    let alias_corpus = [
        "/static../secret.txt",
        "/static..%2fsecret.txt",
        "/static%2e%2e/secret.txt",
        "/static%2e%2e%2fsecret.txt",
        "/static/../secret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/static/%2e%2e/private/secret.txt",
        "/static/..%252fsecret.txt",
        "/static_private/secret.txt",
        "/staticprivate/secret.txt",
        "/static../private/secret.txt",
    ];
    for raw in alias_corpus {
        assert_refused("alias", raw, &fetch(&alias, raw).await);
        assert_refused(
            "alias without slash",
            raw,
            &fetch(&alias_sibling, raw).await,
        );
    }
    count += alias_corpus.len();

    // try_files templates that climb, in a root and in an alias location.
    let mut climbing = site(FileBase::Root(tree.path("root/sub")));
    climbing.try_files = [
        "$uri/../../secret.txt",
        "/..$uri",
        "$uri/../../../private/secret.txt",
        "$uri",
    ]
    .map(|t| TryFile(t.into()))
    .to_vec();
    climbing.fallback = Some(TryFallback::Status(StatusCode::NOT_FOUND));
    let mut climbing_alias = climbing.clone();
    climbing_alias.base = FileBase::Alias {
        prefix: "/static".into(),
        dir: tree.path("assets"),
    };
    let try_corpus = [
        "/x",
        "/ok.txt/..",
        "/a/b",
        "/static../secret.txt",
        "/static/x",
        "/%2e%2e/secret.txt",
    ];
    for raw in try_corpus {
        assert_refused("try_files", raw, &fetch(&climbing, raw).await);
        assert_refused("try_files alias", raw, &fetch(&climbing_alias, raw).await);
    }
    count += try_corpus.len();
    assert!(count >= 40, "corpus has {count} inputs");

    // A gzip_static sidecar that is a symlink leading out is skipped, not
    // served: the client gets the file itself.
    assert_eq!(
        fetch(&root, "/pub.txt").await,
        vec![(StatusCode::OK, Bytes::from("public"))]
    );
}

#[tokio::test]
async fn special_files_are_not_served() {
    let tree = Tree::new();
    let root_dir = tree.path("root");
    let fifo = std::ffi::CString::new(root_dir.join("fifo").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let listener = std::os::unix::net::UnixListener::bind(root_dir.join("sock")).unwrap();
    symlink("/dev/zero", root_dir.join("zero")).unwrap();
    let root = site(FileBase::Root(root_dir));
    // Bounded: a FIFO must not block the lookup.
    for raw in ["/fifo", "/sock", "/zero"] {
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), fetch(&root, raw))
            .await
            .unwrap();
        assert_refused("special", raw, &seen);
    }
    drop(listener);
}

/// The walk a ported single-page-app config takes:
/// `root; index index.html; try_files $uri $uri/ /index.html; gzip_static on;`
#[tokio::test]
async fn single_page_app_config() {
    let tree = Tree::new();
    let mut spa = site(FileBase::Root(tree.path("root")));
    spa.try_files = vec![TryFile("$uri".into()), TryFile("$uri/".into())];
    spa.fallback = Some(TryFallback::Uri("/index.html".into()));
    assert_eq!(
        fetch(&spa, "/pub.txt").await,
        vec![(StatusCode::OK, Bytes::from("public"))]
    );
    assert_eq!(
        fetch(&spa, "/app/route/42").await,
        vec![(StatusCode::OK, Bytes::from("public index"))]
    );
    assert_eq!(
        fetch(&spa, "/").await,
        vec![(StatusCode::OK, Bytes::from("public index"))]
    );
    let seen = fetch(&spa, "/sub").await;
    assert_eq!(seen[0].0, StatusCode::MOVED_PERMANENTLY);
}

#[test]
fn fixture_stays_in_its_tempdir() {
    let tree = Tree::new();
    assert!(Path::new(&tree.path("root/pub.txt")).exists());
    assert!(std::fs::read_link(tree.path("root/link_secret")).is_ok());
}
