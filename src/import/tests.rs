//! Translation tests: one small config per directive or idiom, read from
//! memory, the output read back as TOML.

use super::files::Memory;
use super::report::Status;
use super::*;

fn nginx(conf: &str) -> (toml::Table, Report) {
    let files = Memory::new().with("/etc/nginx/nginx.conf", conf);
    let imported = import(
        &files,
        &Input {
            nginx: Some("/etc/nginx/nginx.conf".into()),
            ..Input::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let table: toml::Table =
        toml::from_str(&imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    let _: crate::config::file::ConfigFile =
        toml::from_str(&imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    (table, imported.report)
}

fn http(body: &str) -> (toml::Table, Report) {
    nginx(&format!("events {{}}\nhttp {{\n{body}\n}}\n"))
}

fn servers(t: &toml::Table) -> &Vec<toml::Value> {
    t["server"].as_array().unwrap()
}

fn locations(t: &toml::Table, server: usize) -> &Vec<toml::Value> {
    servers(t)[server]["location"].as_array().unwrap()
}

fn location<'a>(t: &'a toml::Table, server: usize, path: &str) -> &'a toml::Value {
    locations(t, server)
        .iter()
        .find(|l| l["path"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("no location {path:?} in {t:#?}"))
}

fn has(r: &Report, directive_start: &str, status: Status) -> bool {
    r.items
        .iter()
        .any(|i| i.directive.starts_with(directive_start) && i.status == status)
}

#[test]
fn listen_forms_and_the_tls_split() {
    let (t, r) = http(
        "server { listen 80; listen [::]:80 default_server; listen 127.0.0.1:8443 ssl http2; listen 443 quic; \
         server_name a.test; ssl_certificate c.pem; ssl_certificate_key k.pem; location / { return 204; } }",
    );
    let s = servers(&t);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["listen"].as_array().unwrap().len(), 2);
    assert_eq!(s[0]["default_server"].as_bool(), Some(true));
    assert!(s[0].get("tls").is_none());
    assert_eq!(s[1]["listen"][0].as_str(), Some("127.0.0.1:8443"));
    assert_eq!(s[1]["tls"]["cert"].as_str(), Some("/etc/nginx/c.pem"));
    assert!(has(&r, "listen 443 quic", Status::NotSupported));
    // http2 on one listener only: one switch for all, reported.
    assert!(t.get("http").and_then(|h| h.get("http2")).is_none());
    let (t, _) = http("server { listen 8080; location / { return 204; } }");
    assert_eq!(t["http"]["http2"].as_bool(), Some(false));
}

#[test]
fn ssl_is_per_address_as_in_nginx() {
    let (t, _) = http(
        "server { listen 443 ssl; ssl_certificate c.pem; ssl_certificate_key k.pem; server_name a; location / { return 204; } }\n\
         server { listen 443; server_name b; ssl_certificate c.pem; ssl_certificate_key k.pem; location / { return 204; } }",
    );
    assert!(servers(&t).iter().all(|s| s.get("tls").is_some()));
}

#[test]
fn https_redirect_idioms() {
    let (t, _) =
        http("server { listen 80; server_name a.test; return 301 https://$host$request_uri; }");
    assert_eq!(servers(&t)[0]["redirect_https"].as_bool(), Some(true));
    assert!(servers(&t)[0].get("location").is_none());
    let (t, _) = http("server { listen 80; return 301 https://$host:8443$request_uri; }");
    assert_eq!(servers(&t)[0]["https_port"].as_integer(), Some(8443));
    // $server_name is the first name, written out.
    let (t, _) = http(
        "server { listen 80; server_name a.test b.test; return 301 https://$server_name$request_uri; }",
    );
    assert_eq!(
        location(&t, 0, "/")["return"]["location"].as_str(),
        Some("https://a.test$request_uri")
    );
    // if ($scheme = http) in a server with both kinds of listeners.
    let (t, _) = http(
        "server { listen 80; listen 443 ssl; ssl_certificate c; ssl_certificate_key k; \
         if ($scheme = http) { return 301 https://$host$request_uri; } location / { root /srv; } }",
    );
    let s = servers(&t);
    assert_eq!(s[0]["redirect_https"].as_bool(), Some(true));
    assert_eq!(location(&t, 1, "/")["root"].as_str(), Some("/srv"));
}

#[test]
fn a_host_check_becomes_its_own_server() {
    let (t, _) = http(
        "server { listen 80; server_name a.test www.a.test; \
         if ($host = www.a.test) { return 301 http://a.test$request_uri; } location / { root /srv; } }",
    );
    let s = servers(&t);
    assert_eq!(s.len(), 2);
    assert_eq!(
        s[0]["server_name"].as_array().unwrap(),
        &[toml::Value::from("www.a.test")]
    );
    assert_eq!(
        location(&t, 0, "/")["return"]["status"].as_integer(),
        Some(301)
    );
    assert_eq!(
        s[1]["server_name"].as_array().unwrap(),
        &[toml::Value::from("a.test")]
    );
    let (t, _) = http(
        "server { listen 80 default_server; server_name a.test b.test; \
         if ($host != a.test) { return 404; } location / { root /srv; } }",
    );
    let s = servers(&t);
    assert_eq!(
        s[0]["server_name"].as_array().unwrap(),
        &[toml::Value::from("b.test")]
    );
    assert_eq!(s[0]["default_server"].as_bool(), Some(true));
    assert!(s[1].get("default_server").is_none());
}

#[test]
fn whole_site_rewrites_become_returns() {
    let (t, r) = http(
        "server { listen 80; rewrite ^/(.*) http://x.test/$1 permanent; location /a { root /srv; } }",
    );
    let ret = &location(&t, 0, "/")["return"];
    assert_eq!(ret["status"].as_integer(), Some(301));
    assert_eq!(ret["location"].as_str(), Some("http://x.test$request_uri"));
    assert_eq!(locations(&t, 0).len(), 1);
    assert!(has(&r, "location /a", Status::NotNeeded));
}

#[test]
fn location_modifiers() {
    let (t, r) = http(
        "server { listen 80; location = /x { return 204; } location ^~ /s/ { root /srv; } \
         location ~* \\.(png|jpg)$ { root /img; } location @app { return 204; } \
         location ~ ^/(?!a) { return 204; } location / { try_files $uri @app; root /srv; } }",
    );
    for p in ["= /x", "^~ /s/", "~* \\.(png|jpg)$", "@app", "/"] {
        location(&t, 0, p);
    }
    assert!(has(&r, "location ~ ^/(?!a)", Status::NotSupported));
    assert_eq!(
        location(&t, 0, "/")["try_files"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn a_server_without_location_slash_serves_its_root() {
    let (t, _) = http(
        "server { listen 80; root /srv/www; index index.htm; location /api/ { proxy_pass http://10.0.0.1:8080; } }",
    );
    let slash = location(&t, 0, "/");
    assert_eq!(slash["root"].as_str(), Some("/srv/www"));
    assert_eq!(slash["index"][0].as_str(), Some("index.htm"));
    let (t, _) = http("server { listen 80; location /x { return 204; } }");
    assert_eq!(
        location(&t, 0, "/")["root"].as_str(),
        Some("/usr/share/nginx/html")
    );
}

#[test]
fn proxy_pass_uri_host_and_headers() {
    let (t, r) = http(
        "upstream app { server 10.0.0.1:8080 weight=3 max_fails=2 fail_timeout=30s; server 10.0.0.2 backup; server unix:/x.sock; least_conn; keepalive 16; }\n\
         server { listen 80;\n\
           proxy_set_header X-Outer 1;\n\
           location /a/ { proxy_pass http://app/v1/; }\n\
           location /b/ { proxy_pass http://app; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Id $upstream_addr; }\n\
           location /c/ { proxy_pass http://10.0.0.9:9000/; }\n\
           location /d/ { rewrite ^/d/(.*)$ /$1 break; proxy_pass http://app; }\n\
         }",
    );
    let a = location(&t, 0, "/a/");
    assert_eq!(a["proxy_pass"].as_str(), Some("http://app/v1/"));
    // nginx's defaults: Host is the upstream's name; inherited headers.
    assert_eq!(a["proxy_set_header"]["Host"].as_str(), Some("app"));
    assert_eq!(a["proxy_set_header"]["X-Outer"].as_str(), Some("1"));
    let b = location(&t, 0, "/b/");
    assert_eq!(b["proxy_set_header"]["Host"].as_str(), Some("$host"));
    assert!(b["proxy_set_header"].get("X-Outer").is_none());
    assert!(b["proxy_set_header"].get("X-Forwarded-For").is_none());
    assert!(b["proxy_set_header"].get("X-Id").is_none());
    assert!(has(&r, "proxy_set_header X-Id", Status::NotSupported));
    let c = location(&t, 0, "/c/");
    assert_eq!(c["proxy_pass"].as_str(), Some("http://10.0.0.9:9000/"));
    assert_eq!(
        c["proxy_set_header"]["Host"].as_str(),
        Some("10.0.0.9:9000")
    );
    assert_eq!(
        location(&t, 0, "/d/")["proxy_pass"].as_str(),
        Some("http://app/")
    );
    let up = &t["upstream"]["app"];
    let servers = up["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["weight"].as_integer(), Some(3));
    assert_eq!(servers[0]["fail_timeout"].as_str(), Some("30s"));
    assert_eq!(servers[1]["addr"].as_str(), Some("10.0.0.2:80"));
    assert_eq!(servers[1]["backup"].as_bool(), Some(true));
    assert_eq!(up["balance"].as_str(), Some("least_conn"));
    assert_eq!(up["keepalive"].as_integer(), Some(16));
    assert!(has(&r, "server unix:/x.sock", Status::NotSupported));
    assert!(has(&r, "proxy_pass http://app/v1/", Status::Approximated));
}

#[test]
fn the_websocket_idiom() {
    let (t, r) = http(
        "map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n\
         server { listen 80;\n\
           location /ws { proxy_pass http://10.0.0.1; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; }\n\
           location /old { proxy_pass http://10.0.0.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }\n\
           location /ka { proxy_pass http://10.0.0.1; proxy_http_version 1.1; proxy_set_header Connection \"\"; }\n\
         }",
    );
    assert_eq!(location(&t, 0, "/ws")["websocket"].as_bool(), Some(true));
    assert!(
        location(&t, 0, "/ws")["proxy_set_header"]
            .get("Upgrade")
            .is_none()
    );
    assert!(location(&t, 0, "/old").get("websocket").is_none());
    assert!(location(&t, 0, "/ka").get("websocket").is_none());
    assert!(has(&r, "map $http_upgrade", Status::NotNeeded));
    assert!(has(
        &r,
        "proxy_set_header Connection \"\"",
        Status::NotNeeded
    ));
}

#[test]
fn timeouts_are_per_pool_so_pools_are_copied() {
    let (t, r) = http(
        "upstream app { server 10.0.0.1:80; }\n\
         server { listen 80; proxy_connect_timeout 5s;\n\
           location / { proxy_pass http://app; }\n\
           location /slow { proxy_pass http://app; proxy_read_timeout 300; proxy_next_upstream error timeout http_503 http_404; proxy_next_upstream_tries 2; }\n\
         }",
    );
    assert_eq!(location(&t, 0, "/")["proxy_pass"].as_str(), Some("app"));
    assert_eq!(
        location(&t, 0, "/slow")["proxy_pass"].as_str(),
        Some("app_2")
    );
    let up = &t["upstream"];
    assert_eq!(up["app"]["connect_timeout"].as_str(), Some("5s"));
    assert!(up["app"].get("read_timeout").is_none());
    assert_eq!(up["app_2"]["read_timeout"].as_str(), Some("5m"));
    assert_eq!(up["app_2"]["tries"].as_integer(), Some(2));
    assert_eq!(up["app_2"]["next_upstream"].as_array().unwrap().len(), 3);
    assert!(has(
        &r,
        "proxy_next_upstream error timeout http_503 http_404",
        Status::Approximated
    ));
}

#[test]
fn https_upstreams_are_not_verified_unless_nginx_verifies() {
    let (t, _) = http(
        "upstream s { server 10.0.0.1:443; }\n\
         server { listen 80; location / { proxy_pass https://s; } location /v { proxy_pass https://s; proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.pem; proxy_ssl_name api.internal; } }",
    );
    assert_eq!(
        location(&t, 0, "/")["proxy_pass"].as_str(),
        Some("https://s")
    );
    assert_eq!(t["upstream"]["s"]["tls"]["verify"].as_bool(), Some(false));
    let v = &t["upstream"]["s_2"]["tls"];
    assert_eq!(v["verify"].as_bool(), Some(true));
    assert_eq!(v["ca"].as_str(), Some("/etc/nginx/ca.pem"));
    assert_eq!(v["sni"].as_str(), Some("api.internal"));
}

#[test]
fn balancing_methods() {
    let (t, r) = http(
        "upstream a { ip_hash; server 10.0.0.1; }\nupstream b { hash $request_uri consistent; server 10.0.0.1; }\n\
         upstream c { hash $remote_addr; server 10.0.0.1; }\nupstream d { random two; server 10.0.0.1; }\n\
         server { listen 80; location /a { proxy_pass http://a; } location /b { proxy_pass http://b; } location /c { proxy_pass http://c; } location /d { proxy_pass http://d; } }",
    );
    let up = &t["upstream"];
    assert_eq!(up["a"]["balance"].as_str(), Some("ip_hash"));
    assert_eq!(up["b"]["balance"].as_str(), Some("hash"));
    assert_eq!(up["b"]["hash_key"].as_str(), Some("$request_uri"));
    assert_eq!(up["c"]["hash_key"].as_str(), Some("$remote_addr"));
    assert!(has(&r, "hash $remote_addr", Status::Approximated));
    assert_eq!(up["d"]["balance"].as_str(), Some("random_two"));
}

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

fn keepalived(conf: &str, with_nginx: bool, extra: &[(&str, &str)]) -> (toml::Table, Report) {
    let mut files = Memory::new().with("/etc/keepalived/keepalived.conf", conf);
    for (p, t) in extra {
        files = files.with(*p, *t);
    }
    if with_nginx {
        files = files.with(
            "/etc/nginx/nginx.conf",
            "events {}\nhttp { server { listen 80; location / { return 204; } } }\n",
        );
    }
    let imported = import(
        &files,
        &Input {
            keepalived: Some("/etc/keepalived/keepalived.conf".into()),
            nginx: with_nginx.then(|| "/etc/nginx/nginx.conf".into()),
            ..Input::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _: crate::config::file::ConfigFile =
        toml::from_str(&imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    (toml::from_str(&imported.toml).unwrap(), imported.report)
}

#[test]
fn a_vrrp_instance_with_every_key() {
    let (t, r) = keepalived(
        "global_defs {\n router_id x\n vrrp_garp_master_delay 2\n}\n\
         vrrp_instance VI_1 {\n state MASTER\n interface eth0@if5\n virtual_router_id 51\n priority 150\n advert_int 0.5\n nopreempt\n preempt_delay 30\n\
         unicast_src_ip 10.0.0.1/24\n unicast_peer {\n 10.0.0.2\n }\n authentication {\n auth_type PASS\n auth_pass 123456789\n }\n\
         virtual_ipaddress {\n 10.0.0.100/24 dev eth0 label eth0:vip\n }\n virtual_ipaddress_excluded {\n fd00::1\n }\n\
         track_interface {\n eth0\n eth1 weight -30\n }\n notify_master \"/m.sh a\"\n notify /n.sh\n garp_master_repeat 3\n}\n",
        false,
        &[],
    );
    let i = &t["vrrp"]["instance"][0];
    assert_eq!(i["name"].as_str(), Some("VI_1"));
    assert_eq!(i["interface"].as_str(), Some("eth0"));
    assert_eq!(i["virtual_router_id"].as_integer(), Some(51));
    assert_eq!(i["version"].as_integer(), Some(2));
    assert_eq!(i["advert_interval"].as_str(), Some("1s"));
    assert!(has(&r, "advert_int 0.5", Status::Approximated));
    assert_eq!(i["preempt"].as_bool(), Some(false));
    assert_eq!(i["preempt_delay"].as_str(), Some("30s"));
    assert_eq!(i["unicast_src_ip"].as_str(), Some("10.0.0.1"));
    assert_eq!(i["auth_pass"].as_str(), Some("12345678"));
    assert_eq!(
        i["virtual_ipaddress"].as_array().unwrap(),
        &[
            toml::Value::from("10.0.0.100/24"),
            toml::Value::from("fd00::1")
        ]
    );
    assert!(has(
        &r,
        "10.0.0.100/24 dev eth0 label eth0:vip",
        Status::Approximated
    ));
    assert_eq!(i["garp"]["delay"].as_str(), Some("2s"));
    assert_eq!(i["garp"]["repeat"].as_integer(), Some(3));
    assert_eq!(
        i["notify"]["master"].as_str(),
        Some("/m.sh a; /n.sh INSTANCE VI_1 MASTER \"$VIGIL_PRIORITY\"")
    );
    assert_eq!(i["track"]["interfaces"]["eth1"].as_integer(), Some(-30));
    assert!(i["track"]["interfaces"].get("eth0").is_none());
    assert!(has(&r, "state MASTER", Status::NotNeeded));
}

#[test]
fn nginx_checks_become_proxy_tracking() {
    let conf = "vrrp_script chk { script \"killall -0 nginx\"\n interval 2\n weight -20 }\n\
                vrrp_script other { script \"/usr/local/bin/check_db.sh\"\n interval 5\n fall 2\n rise 3 }\n\
                vrrp_instance V { interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.9\n }\n track_script {\n chk\n other weight 10\n }\n}\n";
    let (t, r) = keepalived(conf, true, &[]);
    let track = &t["vrrp"]["instance"][0]["track"];
    assert_eq!(track["proxy"].as_integer(), Some(-20));
    let s = &track["scripts"][0];
    assert_eq!(s["run"].as_str(), Some("/usr/local/bin/check_db.sh"));
    assert_eq!(s["weight"].as_integer(), Some(10));
    assert_eq!(s["fall"].as_integer(), Some(2));
    assert!(has(&r, "vrrp_script chk", Status::NotNeeded));
    // Without an nginx config there is no proxy to track: kept as a script.
    let (t, r) = keepalived(conf, false, &[]);
    let track = &t["vrrp"]["instance"][0]["track"];
    assert!(track.get("proxy").is_none());
    assert_eq!(track["scripts"].as_array().unwrap().len(), 2);
    assert!(has(&r, "vrrp_script chk", Status::Note));
}

#[test]
fn vrrp3_sync_groups_processes_and_lvs() {
    let (t, r) = keepalived(
        "global_defs { vrrp_version 3 }\nvrrp_track_process p { process nginx\n weight 50 }\n\
         vrrp_sync_group G { group { A B } }\n\
         vrrp_instance A { interface eth0\n virtual_router_id 1\n advert_int 0.2\n authentication { auth_type PASS\n auth_pass x }\n virtual_ipaddress { 10.0.0.1 }\n track_process { p } }\n\
         vrrp_instance B { interface eth1\n virtual_router_id 2\n virtual_ipaddress { 10.0.1.1 }\n use_vmac }\n\
         virtual_server 10.0.0.1 80 { real_server 10.0.0.5 80 { } }\n",
        true,
        &[],
    );
    let a = &t["vrrp"]["instance"][0];
    assert_eq!(a["version"].as_integer(), Some(3));
    assert_eq!(a["advert_interval"].as_str(), Some("200ms"));
    assert!(a.get("auth_type").is_none());
    assert_eq!(a["track"]["proxy"].as_integer(), Some(50));
    assert_eq!(
        t["vrrp"]["sync_group"][0]["instances"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(has(&r, "use_vmac", Status::NotSupported));
    assert!(has(&r, "virtual_server 10.0.0.1 80", Status::NotSupported));
    assert!(has(&r, "authentication", Status::NotNeeded));
}
