//! nginx: headers, returns, access, error pages, rewrites, maps,
//! compression, static files, includes and parse errors.

use super::*;

#[test]
fn add_header_inheritance_is_all_or_nothing() {
    let (t, r) = http(
        "server { listen 80; root /srv; add_header X-A 1; add_header X-B 2 always;\n\
           location / { } location /own { add_header X-C 3; } location /var { add_header X-D $host; } \
           location /nope { add_header X-E $upstream_addr; } }",
    );
    let slash = &location(&t, 0, "/")["add_header"];
    assert_eq!(slash["X-A"].as_str(), Some("1"));
    assert_eq!(slash["X-B"].as_str(), Some("2"));
    let own = &location(&t, 0, "/own")["add_header"];
    assert!(own.get("X-A").is_none());
    assert_eq!(own["X-C"].as_str(), Some("3"));
    // Variables vigil has are rendered per response; others are reported.
    assert_eq!(
        location(&t, 0, "/var")["add_header"]["X-D"].as_str(),
        Some("$host")
    );
    assert!(location(&t, 0, "/nope").get("add_header").is_none());
    assert!(has(&r, "add_header X-B 2 always", Status::Approximated));
    assert!(has(
        &r,
        "add_header X-E $upstream_addr",
        Status::NotSupported
    ));
    assert!(servers(&t)[0].get("add_header").is_none());
}

#[test]
fn hsts_goes_to_the_tls_server() {
    let (t, r) = http(
        "server { listen 80; listen 443 ssl; ssl_certificate c; ssl_certificate_key k; \
         add_header Strict-Transport-Security \"max-age=300\" always; location / { root /srv; } }",
    );
    assert_eq!(servers(&t)[1]["hsts"].as_str(), Some("max-age=300"));
    assert!(servers(&t)[0].get("hsts").is_none());
    assert!(location(&t, 1, "/").get("add_header").is_none());
    let _ = r;
}

#[test]
fn expires_on_files_and_on_proxied_responses() {
    let (t, r) = http(
        "server { listen 80; location /s/ { root /srv; expires 1y; } location /e/ { root /srv; expires epoch; } \
         location /p/ { proxy_pass http://10.0.0.1; expires 1h; add_header Cache-Control public; } }",
    );
    assert_eq!(location(&t, 0, "/s/")["expires"].as_str(), Some("365d"));
    assert_eq!(location(&t, 0, "/e/")["expires"].as_str(), Some("epoch"));
    assert_eq!(
        location(&t, 0, "/p/")["add_header"]["Cache-Control"].as_str(),
        Some("max-age=3600, public")
    );
    assert!(has(&r, "expires 1h", Status::Approximated));
}

#[test]
fn returns_and_their_content_type() {
    let (t, r) = nginx(
        "events {}\nhttp { default_type application/octet-stream;\n\
         server { listen 80; location /a { return 200 \"ok\"; } location /b { default_type text/plain; return 200 'x $host'; }\n\
         location /c { return 200 \"{}\"; add_header Content-Type application/json; } location /d { return 200 \"t=$time_iso8601 c=$connection\"; }\n\
         location /e { return 444; } location /f { return https://x.test/; } } }",
    );
    let a = &location(&t, 0, "/a")["return"];
    assert_eq!(a["content_type"].as_str(), Some("application/octet-stream"));
    let b = &location(&t, 0, "/b")["return"];
    assert_eq!(b["body"].as_str(), Some("x $host"));
    assert!(b.get("content_type").is_none());
    assert_eq!(
        location(&t, 0, "/c")["return"]["content_type"].as_str(),
        Some("application/json")
    );
    assert!(location(&t, 0, "/c").get("add_header").is_none());
    // A variable vigil lacks is left out of the body, and reported.
    assert_eq!(
        location(&t, 0, "/d")["return"]["body"].as_str(),
        Some("t=$time_iso8601 c=")
    );
    assert!(has(
        &r,
        "return 200 \"t=$time_iso8601 c=$connection\"",
        Status::Approximated
    ));
    assert!(has(&r, "return 444", Status::Approximated));
    assert_eq!(
        location(&t, 0, "/f")["return"]["status"].as_integer(),
        Some(302)
    );
}

#[test]
fn access_phase_internal_and_unknown_handlers() {
    let (t, r) = http(
        "server { listen 80; location /deny { deny all; } location /both { allow 10.0.0.0/8; deny all; root /srv; } \
         location = /e.html { internal; } location /py { uwsgi_pass 127.0.0.1:9000; } location /st { stub_status; } \
         location /ret { deny all; return 200 'r'; } }",
    );
    assert_eq!(access(location(&t, 0, "/deny")), ["deny all"]);
    let both = location(&t, 0, "/both");
    assert_eq!(both["root"].as_str(), Some("/srv"));
    assert_eq!(access(both), ["allow 10.0.0.0/8", "deny all"]);
    // internal: translated as such, nothing to report.
    let e = location(&t, 0, "= /e.html");
    assert!(e.get("return").is_none());
    assert_eq!(e["internal"].as_bool(), Some(true));
    assert!(!r.items.iter().any(|i| i.directive.starts_with("internal")));
    assert_eq!(
        location(&t, 0, "/py")["return"]["status"].as_integer(),
        Some(501)
    );
    assert!(has(&r, "uwsgi_pass", Status::NotSupported));
    assert!(has(&r, "stub_status", Status::NotSupported));
    // return runs in the rewrite phase, before access checks: vigil's
    // location gets the access list turned off, and the rule is reported
    // as never used.
    let ret = location(&t, 0, "/ret");
    assert_eq!(ret["return"]["status"].as_integer(), Some(200));
    assert!(access(ret).is_empty());
    assert!(has(&r, "deny all", Status::NotNeeded));
}

fn access(loc: &toml::Value) -> Vec<&str> {
    loc["access"]
        .as_array()
        .expect("access list")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn edge_controls_follow_nginx_inheritance() {
    let (t, r) = http(
        "limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;\n\
         limit_conn_zone $binary_remote_addr zone=addr:1m;\n\
         limit_req_zone $host zone=bad:1m rate=1r/s sync;\n\
         deny 192.0.2.1; limit_req_status 429; set_real_ip_from 10.0.0.1/8; real_ip_recursive on;\n\
         server { listen 80; real_ip_header X-Forwarded-For; limit_req zone=api burst=20 nodelay; \
           location / { root /srv; } \
           location /open { allow all; limit_req zone=api burst=5 delay=2; limit_conn addr 3; root /srv; \
             location /open/deep { root /srv; } } \
           location /staff { auth_basic \"Staff\"; auth_basic_user_file htpasswd; root /srv; } \
           location /pub { auth_basic off; limit_req zone=bad; root /srv; } } \
         server { listen 81; location / { root /srv; } }",
    );
    // Zones: tables; one vigil cannot make is reported, and so is its user.
    assert_eq!(
        t["limit_req_zone"]["api"]["key"].as_str(),
        Some("$binary_remote_addr")
    );
    assert_eq!(t["limit_req_zone"]["api"]["rate"].as_str(), Some("10r/s"));
    assert_eq!(t["limit_req_zone"]["api"]["size"].as_str(), Some("10m"));
    assert_eq!(t["limit_conn_zone"]["addr"]["size"].as_str(), Some("1m"));
    assert!(t["limit_req_zone"].get("bad").is_none());
    assert!(has(
        &r,
        "limit_req_zone $host zone=bad:1m rate=1r/s sync",
        Status::NotSupported
    ));
    assert!(has(&r, "limit_req zone=bad", Status::NotSupported));
    // http-level lists vigil has no [http] key for: pushed into each server.
    for s in servers(&t) {
        assert_eq!(
            s["access"].as_array().unwrap()[0].as_str(),
            Some("deny 192.0.2.1")
        );
        assert_eq!(s["limit_req_status"].as_integer(), Some(429));
    }
    // Real IP: [http] takes the list and the recursion, the server the header.
    assert_eq!(
        t["http"]["set_real_ip_from"][0].as_str(),
        Some("10.0.0.0/8")
    );
    assert_eq!(t["http"]["real_ip_recursive"].as_bool(), Some(true));
    assert_eq!(
        servers(&t)[0]["real_ip_header"].as_str(),
        Some("X-Forwarded-For")
    );
    let srv_limit = &servers(&t)[0]["limit_req"][0];
    assert_eq!(srv_limit["zone"].as_str(), Some("api"));
    assert_eq!(srv_limit["burst"].as_integer(), Some(20));
    assert_eq!(srv_limit["nodelay"].as_bool(), Some(true));
    assert!(servers(&t)[1].get("limit_req").is_none());
    // A location's own list replaces the server's (nginx's array merge);
    // a location that sets nothing inherits through vigil's own rules.
    assert!(location(&t, 0, "/").get("limit_req").is_none());
    assert!(location(&t, 0, "/").get("access").is_none());
    let open = location(&t, 0, "/open");
    assert_eq!(access(open), ["allow all"]);
    assert_eq!(open["limit_req"][0]["delay"].as_integer(), Some(2));
    assert_eq!(open["limit_conn"][0]["limit"].as_integer(), Some(3));
    // Flattened nested location: the enclosing location's lists.
    let deep = location(&t, 0, "/open/deep");
    assert_eq!(access(deep), ["allow all"]);
    assert_eq!(deep["limit_conn"][0]["zone"].as_str(), Some("addr"));
    let staff = location(&t, 0, "/staff");
    assert_eq!(staff["auth_basic"].as_str(), Some("Staff"));
    assert!(
        staff["auth_basic_user_file"]
            .as_str()
            .is_some_and(|p| p.starts_with('/') && p.ends_with("/htpasswd"))
    );
    assert_eq!(location(&t, 0, "/pub")["auth_basic"].as_str(), Some("off"));
    assert!(
        location(&t, 0, "/pub")["limit_req"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn error_pages_and_intercepted_upstream_errors() {
    let (t, r) = http(
        "error_page 500 502 /50x.html;\n\
         upstream app { server 127.0.0.1:9000; }\n\
         server { listen 80; location / { root /srv; } location /api/ { proxy_pass http://app; proxy_intercept_errors on; \
           error_page 404 = @fallback; error_page 502 =200 /empty.json; error_page 503 http://status.test/; } \
           location @fallback { proxy_pass http://app; } \
           location /gone/ { error_page 404 @nowhere; root /srv; } } \
         server { listen 81; proxy_intercept_errors on; error_page 404 /404.html; location / { root /srv; } }",
    );
    // http-level pages, which vigil takes per server, in the first server.
    let pages = servers(&t)[0]["error_page"].as_array().unwrap();
    assert_eq!(pages[0]["codes"].as_array().unwrap().len(), 2);
    assert_eq!(pages[0]["uri"].as_str(), Some("/50x.html"));
    // A location's own pages replace the server's.
    let api = location(&t, 0, "/api/");
    assert_eq!(api["proxy_intercept_errors"].as_bool(), Some(true));
    let pages = api["error_page"].as_array().unwrap();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0]["response"].as_str(), Some("="));
    assert_eq!(pages[0]["uri"].as_str(), Some("@fallback"));
    assert_eq!(pages[1]["response"].as_integer(), Some(200));
    assert_eq!(pages[2]["uri"].as_str(), Some("http://status.test/"));
    // A page aimed at a location that does not exist is left out (vigil
    // refuses it); nginx would answer with its own page there too.
    assert!(
        location(&t, 0, "/gone/")["error_page"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The second server's own page; proxy_intercept_errors has nothing to
    // act on in a static location and is not written there.
    assert_eq!(
        servers(&t)[1]["error_page"][0]["uri"].as_str(),
        Some("/404.html")
    );
    assert!(location(&t, 1, "/").get("proxy_intercept_errors").is_none());
    assert!(!has(&r, "error_page", Status::NotSupported));
}

#[test]
fn general_rewrites_become_rules_on_their_level() {
    let (t, r) = http(
        "server { listen 80; rewrite ^/old/(.*)$ /new/$1 last; rewrite ^/x(?=y) /z; \
           location / { root /srv; } \
           location /dl/ { rewrite ^(/dl/.*)/media/(.*)\\..*$ $1/mp3/$2.mp3 break; root /srv; return 403; rewrite ^ /never; } \
           location /go/ { rewrite ^/go/(.*)$ http://x.test/$1 redirect; } }",
    );
    let srv = &servers(&t)[0]["rewrite"];
    assert_eq!(srv[0]["regex"].as_str(), Some("^/old/(.*)$"));
    assert_eq!(srv[0]["replacement"].as_str(), Some("/new/$1"));
    assert_eq!(srv[0]["flag"].as_str(), Some("last"));
    // Look-ahead: vigil's regex engine has none; reported, not written.
    assert_eq!(srv.as_array().unwrap().len(), 1);
    assert!(has(&r, "rewrite ^/x(?=y) /z", Status::NotSupported));
    let dl = location(&t, 0, "/dl/");
    assert_eq!(
        dl["rewrite"][0]["replacement"].as_str(),
        Some("$1/mp3/$2.mp3")
    );
    assert_eq!(dl["rewrite"][0]["flag"].as_str(), Some("break"));
    assert_eq!(dl["return"]["status"].as_integer(), Some(403));
    assert!(has(&r, "rewrite ^ /never", Status::NotNeeded));
    // A redirect nginx appends ?args to is a rule too (vigil appends them
    // the same way), not a fixed return.
    let go = location(&t, 0, "/go/");
    assert_eq!(go["rewrite"][0]["flag"].as_str(), Some("redirect"));
    assert!(go.get("return").is_none());
}

#[test]
fn maps_become_tables_their_users_keep() {
    let (t, r) = http(
        "map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n\
         map $host $tier { hostnames; default standard; *.corp.test gold; ~^(?<team>\\w+)\\.dev\\. dev-$team; }\n\
         map $tier $pool_hint { default $tier; gold fast; }\n\
         map $uri $broken { ~^/(?=x) y; }\n\
         map $broken $user_of_broken { default x; }\n\
         map $tier $limit_key { gold \"\"; default $binary_remote_addr; }\n\
         limit_req_zone $limit_key zone=tiered:1m rate=5r/s;\n\
         upstream app { server 127.0.0.1:9000; }\n\
         server { listen 80; location / { proxy_pass http://app; proxy_set_header X-Tier $tier; proxy_set_header X-Hint $pool_hint; } }",
    );
    let tier = &t["map"]["tier"];
    assert_eq!(tier["source"].as_str(), Some("$host"));
    assert_eq!(tier["hostnames"].as_bool(), Some(true));
    assert_eq!(tier["default"].as_str(), Some("standard"));
    assert_eq!(tier["entries"][1][1].as_str(), Some("dev-$team"));
    assert_eq!(t["map"]["pool_hint"]["default"].as_str(), Some("$tier"));
    // The WebSocket idiom stays vigil's websocket switch.
    assert!(t["map"].get("connection_upgrade").is_none());
    // A look-ahead key: not translated; its user goes with it.
    assert!(t["map"].get("broken").is_none());
    assert!(t["map"].get("user_of_broken").is_none());
    assert!(has(&r, "map $uri $broken", Status::NotSupported));
    assert!(has(&r, "map $broken $user_of_broken", Status::NotSupported));
    // A zone keyed by a map (nginx's allow-list idiom).
    assert_eq!(
        t["limit_req_zone"]["tiered"]["key"].as_str(),
        Some("$limit_key")
    );
    let headers = &location(&t, 0, "/")["proxy_set_header"];
    assert_eq!(headers["X-Tier"].as_str(), Some("$tier"));
    assert_eq!(headers["X-Hint"].as_str(), Some("$pool_hint"));
}

#[test]
fn compression_is_written_where_nginx_has_it() {
    let (t, r) = http(
        "gzip on; gzip_types text/css application/json; gzip_comp_level 5; gzip_min_length 1k;\n\
         gzip_vary on; gzip_proxied expired no-cache; gzip_disable msie6; gzip_buffers 16 8k;\n\
         server { listen 80; gzip_comp_level 9; location / { root /srv; } location /raw { gzip off; root /srv; } }",
    );
    assert_eq!(t["http"]["gzip"].as_bool(), Some(true));
    assert_eq!(t["http"]["gzip_comp_level"].as_integer(), Some(5));
    assert_eq!(t["http"]["gzip_min_length"].as_integer(), Some(1024));
    assert_eq!(
        t["http"]["gzip_types"][1].as_str(),
        Some("application/json")
    );
    assert_eq!(t["http"]["gzip_proxied"][0].as_str(), Some("expired"));
    assert_eq!(servers(&t)[0]["gzip_comp_level"].as_integer(), Some(9));
    assert_eq!(location(&t, 0, "/raw")["gzip"].as_bool(), Some(false));
    assert!(location(&t, 0, "/").get("gzip").is_none());
    assert!(has(&r, "gzip_disable msie6", Status::NotSupported));
    assert!(has(&r, "gzip_buffers 16 8k", Status::NotNeeded));
}

#[test]
fn body_sizes_and_timeouts_at_each_level() {
    let (t, r) = http(
        "client_max_body_size 5m; client_body_timeout 20s;\n\
         server { listen 80; client_max_body_size 10M; client_header_timeout 15s; location / { root /srv; } location /up { client_max_body_size 0; root /srv; } }\n\
         server { listen 81; client_header_timeout 15s; location / { root /srv; } }",
    );
    assert_eq!(t["http"]["client_max_body_size"].as_str(), Some("5m"));
    assert_eq!(t["http"]["client_body_timeout"].as_str(), Some("20s"));
    assert_eq!(t["http"]["client_header_timeout"].as_str(), Some("15s"));
    assert_eq!(servers(&t)[0]["client_max_body_size"].as_str(), Some("10m"));
    assert_eq!(
        location(&t, 0, "/up")["client_max_body_size"].as_str(),
        Some("0")
    );
    let (t, r2) = http(
        "server { listen 80; send_timeout 10s; location / { return 204; } }\nserver { listen 81; send_timeout 20s; location / { return 204; } }",
    );
    assert!(t.get("http").and_then(|h| h.get("send_timeout")).is_none());
    assert!(has(&r2, "send_timeout 10s", Status::Approximated));
    let _ = r;
}

/// The corpus writes `client_body_buffer_size 128k` 27 times (in 4 files)
/// and `proxy_request_buffering off` 9 times (in 3): the first is vigil's
/// in-memory share of a held body, the second turns holding off per
/// location.
#[test]
fn request_body_buffering() {
    let (t, r) = http(
        "client_body_buffer_size 128k; client_body_temp_path /var/lib/nginx/body 1 2;\n\
         server { listen 80;\n\
           location /up { proxy_pass http://127.0.0.1:9000; proxy_request_buffering off; }\n\
           location / { proxy_pass http://127.0.0.1:9000; proxy_request_buffering on; } }",
    );
    assert_eq!(t["http"]["client_body_buffer_size"].as_str(), Some("128k"));
    assert_eq!(
        t["http"]["client_body_temp_path"].as_str(),
        Some("/var/lib/nginx/body")
    );
    assert_eq!(
        location(&t, 0, "/up")["request_buffering"].as_bool(),
        Some(false)
    );
    assert!(location(&t, 0, "/").get("request_buffering").is_none());
    assert!(has(&r, "proxy_request_buffering on", Status::NotNeeded));
    // In servers, one value if they agree.
    let (t, _) = http(
        "server { listen 80; client_body_buffer_size 1m; location / { return 204; } }\n\
         server { listen 81; location / { client_body_buffer_size 1m; proxy_pass http://127.0.0.1:9000; } }",
    );
    assert_eq!(t["http"]["client_body_buffer_size"].as_str(), Some("1m"));
    let (t, r) = http(
        "server { listen 80; client_body_buffer_size 1m; location / { return 204; } }\n\
         server { listen 81; client_body_buffer_size 8k; location / { return 204; } }",
    );
    assert!(
        t.get("http")
            .and_then(|h| h.get("client_body_buffer_size"))
            .is_none()
    );
    assert!(has(&r, "client_body_buffer_size 8k", Status::Approximated));
}

#[test]
fn static_files_root_alias_index_try_files() {
    let (t, r) = http(
        "server { listen 80; root html; index index.php index.html /x.html;\n\
           location /d/ { alias /srv/d/; } location /n { alias /srv/n/; } location /g/ { alias /srv/g; }\n\
           location / { try_files $uri $uri/ /index.html; gzip_static on; }\n\
           location ~ \\.css$ { alias /srv/css/; } }",
    );
    assert_eq!(location(&t, 0, "/d/")["alias"].as_str(), Some("/srv/d/"));
    assert_eq!(location(&t, 0, "/n")["alias"].as_str(), Some("/srv/n"));
    assert_eq!(location(&t, 0, "/g/")["alias"].as_str(), Some("/srv/g/"));
    assert!(has(&r, "alias /srv/g", Status::Approximated));
    let slash = location(&t, 0, "/");
    assert_eq!(slash["root"].as_str(), Some("/usr/share/nginx/html"));
    assert_eq!(slash["index"].as_array().unwrap().len(), 2);
    assert_eq!(slash["try_files"].as_array().unwrap().len(), 3);
    assert_eq!(slash["gzip_static"].as_bool(), Some(true));
    assert!(has(
        &r,
        "index index.php index.html /x.html",
        Status::NotSupported
    ));
    assert!(
        has(&r, "location ~ \\.css$", Status::NotSupported)
            || has(&r, "alias /srv/css/", Status::NotSupported)
    );
}

#[test]
fn nested_regexes_are_tried_first_and_reported() {
    let (t, r) = http(
        "server { listen 80; root /srv; location ~ \\.css$ { expires 1d; } \
         location / { location ~* \\.html$ { expires 1h; } } }",
    );
    let paths: Vec<&str> = locations(&t, 0)
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    let html = paths.iter().position(|p| *p == "~* \\.html$").unwrap();
    let css = paths.iter().position(|p| *p == "~ \\.css$").unwrap();
    assert!(html < css, "{paths:?}");
    assert!(has(&r, "location ~* \\.html$", Status::Approximated));
}

#[test]
fn main_level_and_logs() {
    let (t, r) = nginx(
        "user www; worker_processes 4; pid /run/n.pid; error_log /var/log/e.log warn;\n\
         events { worker_connections 1024; }\n\
         http { log_format main '$remote_addr'; access_log /var/log/a.log main buffer=32k; sendfile on;\n\
         server { listen 80; access_log off; location / { return 204; } } }",
    );
    assert_eq!(t["http"]["workers"].as_integer(), Some(4));
    assert_eq!(t["log"]["level"].as_str(), Some("warn"));
    assert_eq!(t["log"]["access_log"].as_str(), Some("/var/log/a.log"));
    assert_eq!(t["log"]["access_log_buffer"].as_str(), Some("32k"));
    for (d, s) in [
        ("user www", Status::NotNeeded),
        ("pid /run/n.pid", Status::NotNeeded),
        ("sendfile on", Status::NotNeeded),
        ("worker_connections 1024", Status::NotNeeded),
        ("error_log /var/log/e.log warn", Status::Approximated),
        ("access_log off", Status::Approximated),
        ("log_format main", Status::Approximated),
    ] {
        assert!(has(&r, d, s), "{d}\n{}", r.text());
    }
}

#[test]
fn includes_missing_and_unknown_directives_are_reported() {
    let files = Memory::new()
        .with("/etc/nginx/nginx.conf", "events {}\nhttp { include mime.types; include conf.d/*.conf; include gone.conf; more_set_headers 'X: y'; }\n")
        .with("/etc/nginx/mime.types", "types { text/html html; }\n")
        .with("/etc/nginx/conf.d/a.conf", "server { listen 80; location / { return 204; } }\n");
    let imported = import(
        &files,
        &Input {
            nginx: Some("/etc/nginx/nginx.conf".into()),
            ..Input::default()
        },
    )
    .unwrap();
    let r = &imported.report;
    assert!(has(r, "include /etc/nginx/gone.conf", Status::NotSupported));
    assert!(has(r, "more_set_headers", Status::Unknown));
    assert!(has(r, "types", Status::NotNeeded));
    assert!(r.items.iter().any(|i| i.place == "/etc/nginx/mime.types:1"));
    assert!(
        imported
            .toml
            .contains("# location /, /etc/nginx/conf.d/a.conf:1")
    );
}

#[test]
fn a_misplaced_directive_is_a_parse_error_with_its_line() {
    let files = Memory::new().with(
        "/n.conf",
        "events {}\nhttp {\n server {\n  upstream x { server 10.0.0.1; }\n }\n}\n",
    );
    let e = import(
        &files,
        &Input {
            nginx: Some("/n.conf".into()),
            ..Input::default()
        },
    )
    .unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("/n.conf", 4));
    assert_eq!(
        e.to_string(),
        "/n.conf:4: \"upstream\" directive is not allowed here (nginx allows it in: http)"
    );
}
