//! An imported nginx config behaves as nginx would: `vigil import` on a
//! config with access rules, a rate limit and gzip, then `vigil run` on
//! the result (127.0.0.1 only), checked with real requests (curl).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::imported::Imported;

/// Status and headers of one GET (curl -i, headers only).
fn get(url: &str, headers: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-D", "-", "--max-time", "5", url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

#[test]
fn imported_edge_controls_and_gzip_behave_as_in_nginx() {
    if !support::netns::tool_exists("curl") {
        assert!(std::env::var_os("CI").is_none(), "curl is needed in CI");
        eprintln!("skipping: curl not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    for sub in ["", "closed", "limited", "open"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let text = "hello from the imported config, long enough to be compressed\n".repeat(4);
    for f in ["a.txt", "closed/a.txt", "limited/a.txt", "open/a.txt"] {
        std::fs::write(root.join(f), &text).unwrap();
    }
    std::fs::write(root.join("denied.html"), "<p>not for you</p>\n").unwrap();
    let port = support::backend::free_port();
    let root = root.display();
    let nginx = format!(
        "events {{}}
http {{
    types {{ text/plain txt; }}
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 10;
    deny 192.0.2.0/24;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        error_page 403 /denied.html;
        rewrite ^/old/(.*)$ /open/$1 last;
        location /go/ {{ rewrite ^/go/(.*)$ http://elsewhere.test/$1 permanent; }}
        location /closed/ {{ deny 127.0.0.1; }}
        location /open/ {{ allow all; }}
        location /limited/ {{ limit_req zone=one burst=1 nodelay; limit_req_status 429; }}
        location / {{ }}
    }}
}}
"
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx).unwrap();
    let vigil = Imported::start(&conf, &dir.path().join("vigil.toml"));
    let imported = &vigil.toml;
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while get(&format!("{base}/a.txt"), &[]).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "vigil did not start:\n{imported}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // deny in the location replaces the server's list: 127.0.0.1 refused;
    // allow all opens a location under a server-wide list.
    assert_eq!(
        get(&format!("{base}/closed/a.txt"), &[]).0,
        403,
        "{imported}"
    );
    assert_eq!(get(&format!("{base}/open/a.txt"), &[]).0, 200);
    // 1 r/m with burst 1, nodelay: two pass at once, the third is refused
    // with the status nginx was told to use.
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(&format!("{base}/limited/a.txt"), &[]).0)
        .collect();
    assert_eq!(statuses, [200, 200, 429], "{imported}");
    // rewrite: an internal one before the location search, and a redirect
    // to which nginx appends the arguments.
    assert_eq!(get(&format!("{base}/old/a.txt"), &[]).0, 200, "{imported}");
    let (status, head) = get(&format!("{base}/go/x?y=1"), &[]);
    assert_eq!(status, 301, "{imported}");
    assert!(
        head.contains("location: http://elsewhere.test/x?y=1"),
        "{head}"
    );
    // gzip for clients that ask, of the listed type.
    let (status, head) = get(&format!("{base}/a.txt"), &["Accept-Encoding: gzip"]);
    assert_eq!(status, 200);
    assert!(
        head.contains("content-encoding: gzip"),
        "{head}\n{imported}"
    );
    let (_, head) = get(&format!("{base}/a.txt"), &[]);
    assert!(!head.contains("content-encoding"), "{head}");
}
