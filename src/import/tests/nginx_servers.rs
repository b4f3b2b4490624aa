//! nginx: listen, TLS, redirects, servers, proxying and pools.

use super::*;

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
    assert_eq!(
        b["proxy_set_header"]["X-Forwarded-For"].as_str(),
        Some("$proxy_add_x_forwarded_for")
    );
    assert_eq!(b["forwarding_headers"].as_bool(), Some(false));
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
