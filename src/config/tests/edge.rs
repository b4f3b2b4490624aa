//! Config rules for the edge controls: access lists, real address, rate
//! and connection limits, basic auth, PROXY protocol listeners.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use crate::config::edge::{RealIpHeader, ZoneKey};
use crate::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/vigil/vigil.toml"))
}

/// The error text (every problem as `file:line: key: reason`).
fn problem(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const EDGE: &str = r#"
[http]
set_real_ip_from = ["10.0.0.0/8", "2001:db8::/32"]
real_ip_header = "X-Forwarded-For"

[limit_req_zone.api]
key = "$binary_remote_addr"
rate = "10r/s"
size = "1m"

[limit_req_zone.login]
key = "$server_name$http_x_api_key"
rate = "30r/m"

[limit_conn_zone.addr]
key = "$remote_addr"
size = "64k"

[[server]]
listen = ["127.0.0.1:8080"]
access = ["allow 127.0.0.1", "deny all"]
limit_req = [{ zone = "api", burst = 20, nodelay = true }]
limit_req_status = 429
limit_conn = [{ zone = "addr", limit = 10 }]
real_ip_recursive = true

  [[server.location]]
  path = "/"
  return = { status = 200 }

  [[server.location]]
  path = "/open/"
  access = []
  limit_req = [{ zone = "login", burst = 5, delay = 2 }]
  return = { status = 200 }
"#;

#[test]
fn edge_keys_build_with_nginx_inheritance() {
    let c = parse(EDGE).unwrap();
    let api = &c.limit_req_zones["api"];
    assert_eq!(api.key, ZoneKey::RemoteAddr);
    assert_eq!(api.rate.milli_per_sec, 10_000);
    assert_eq!(api.slots, 65536);
    let login = &c.limit_req_zones["login"];
    assert!(matches!(login.key, ZoneKey::Template(_)));
    assert_eq!(login.rate.milli_per_sec, 500);
    assert_eq!(login.slots, 65536, "1m by default");
    assert_eq!(c.limit_conn_zones["addr"].key, ZoneKey::RemoteAddr);
    assert_eq!(c.limit_conn_zones["addr"].slots, 4096);

    let s = &c.servers[0];
    let real = s.real_ip.as_ref().unwrap();
    assert_eq!(real.header, RealIpHeader::XForwardedFor, "from [http]");
    assert!(real.recursive, "from the server");
    assert!(real.trusted.contains(ip("10.1.2.3")));

    // The first location inherits everything from the server.
    let root = &s.locations[0].edge;
    assert!(root.access.permits(ip("127.0.0.1")));
    assert!(!root.access.permits(ip("192.0.2.1")));
    assert_eq!(root.limit_req.len(), 1);
    assert_eq!(root.limit_req[0].burst_milli, 20_000);
    assert_eq!(root.limit_req[0].delay_milli, u64::MAX, "nodelay");
    assert_eq!(root.limit_req_status.as_u16(), 429);
    assert_eq!(root.limit_conn[0].limit, 10);
    assert_eq!(root.limit_conn_status.as_u16(), 503, "nginx's default");

    // Lists replace the server's; single values are still inherited.
    let open = &s.locations[1].edge;
    assert!(open.access.permits(ip("192.0.2.1")), "access = [] opens it");
    assert_eq!(open.limit_req.len(), 1);
    assert_eq!(open.limit_req[0].zone.name, "login");
    assert_eq!(open.limit_req[0].delay_milli, 2000);
    assert_eq!(open.limit_req_status.as_u16(), 429);
    assert_eq!(open.limit_conn.len(), 1, "limit_conn inherited");
}

#[test]
fn no_edge_keys_no_controls() {
    let c = parse("[[server]]\nlisten = [\"8080\"]\nroot = \"/srv\"\n").unwrap();
    assert!(c.servers[0].real_ip.is_none());
    assert!(c.servers[0].locations[0].edge.is_empty());
    assert!(!c.listeners[0].proxy_protocol);
}

fn server_with(keys: &str) -> String {
    format!(
        "[limit_req_zone.z]\nkey = \"$remote_addr\"\nrate = \"1r/s\"\n\
         [limit_conn_zone.c]\nkey = \"$remote_addr\"\n\
         [[server]]\nlisten = [\"8080\"]\n{keys}\n[[server.location]]\npath = \"/\"\nreturn = {{ status = 204 }}\n"
    )
}

#[test]
fn bad_edge_values_name_file_line_and_key() {
    let e = problem(&server_with("access = [\"allow 10.0.0.1/8\"]"));
    assert!(
        e.contains("vigil.toml:8: server[0].access[0]: \"10.0.0.1/8\" has host bits set"),
        "{e}"
    );
    let e = problem(&server_with("access = [\"permit 10.0.0.0/8\"]"));
    assert!(
        e.contains("server[0].access[0]") && e.contains("allow ADDRESS"),
        "{e}"
    );
    let e = problem(&server_with("limit_req = [{ zone = \"nope\" }]"));
    assert!(
        e.contains("server[0].limit_req[0].zone: unknown zone \"nope\"; defined: z"),
        "{e}"
    );
    let e = problem(&server_with("limit_conn = [{ zone = \"z\", limit = 1 }]"));
    assert!(e.contains("unknown zone \"z\"; defined: c"), "{e}");
    let e = problem(&server_with("limit_conn = [{ zone = \"c\", limit = 0 }]"));
    assert!(e.contains("limit_conn[0].limit: must be at least 1"), "{e}");
    let e = problem(&server_with(
        "limit_req = [{ zone = \"z\", burst = 5, delay = 6 }]",
    ));
    assert!(e.contains("delay 6 is more than burst 5"), "{e}");
    let e = problem(&server_with(
        "limit_req = [{ zone = \"z\", burst = 5, delay = 1, nodelay = true }]",
    ));
    assert!(e.contains("nodelay and delay cannot both be set"), "{e}");
    let e = problem(&server_with(
        "limit_req = [{ zone = \"z\" }, { zone = \"z\" }]",
    ));
    assert!(
        e.contains("limit_req[1].zone: zone \"z\" is listed twice"),
        "{e}"
    );
    let e = problem(&server_with("limit_req_status = 200"));
    assert!(
        e.contains("limit_req_status: 200 is not a status between 400"),
        "{e}"
    );
    let e = problem(&server_with("set_real_ip_from = [\"10.0.0.0/33\"]"));
    assert!(e.contains("server[0].set_real_ip_from[0]"), "{e}");
    let e = problem(&server_with("real_ip_header = \"bad header\""));
    assert!(
        e.contains("real_ip_header: \"bad header\" is not a header name"),
        "{e}"
    );
    let e = problem(&server_with(
        "set_real_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"proxy_protocol\"",
    ));
    assert!(e.contains("needs proxy_protocol = true"), "{e}");
    let e = problem(&server_with("auth_basic = \"Admin\""));
    assert!(
        e.contains("server[0].auth_basic: auth_basic needs auth_basic_user_file"),
        "{e}"
    );
    let e = problem(&server_with(
        "auth_basic = \"Admin\"\nauth_basic_user_file = \"/nonexistent/htpasswd\"",
    ));
    assert!(
        e.contains("server[0].auth_basic_user_file: cannot read /nonexistent/htpasswd"),
        "{e}"
    );
    assert!(!e.contains("needs auth_basic_user_file"), "said once: {e}");
}

#[test]
fn bad_zones() {
    let zone = |body: &str| {
        format!("[limit_req_zone.z]\n{body}\n[[server]]\nlisten = [\"8080\"]\nroot = \"/srv\"\n")
    };
    let e = problem(&zone("key = \"$remote_addr\"\nrate = \"10r/h\""));
    assert!(
        e.contains("vigil.toml:3: limit_req_zone.z.rate: \"10r/h\" is not a rate"),
        "{e}"
    );
    let e = problem(&zone("key = \"client\"\nrate = \"1r/s\""));
    assert!(
        e.contains("limit_req_zone.z.key") && e.contains("no variable"),
        "{e}"
    );
    let e = problem(&zone("key = \"$nope\"\nrate = \"1r/s\""));
    assert!(e.contains("unknown variable $nope"), "{e}");
    let e = problem(&zone(
        "key = \"$remote_addr\"\nrate = \"1r/s\"\nsize = \"100\"",
    ));
    assert!(
        e.contains("limit_req_zone.z.size") && e.contains("between 1k and 1g"),
        "{e}"
    );
}

#[test]
fn proxy_protocol_is_per_listen_address() {
    let text = r#"
[[server]]
listen = ["8080"]
server_name = ["a"]
proxy_protocol = true
set_real_ip_from = ["127.0.0.1"]
real_ip_header = "proxy_protocol"
root = "/srv"

[[server]]
listen = ["8080"]
server_name = ["b"]
root = "/srv"
"#;
    let e = problem(text);
    assert!(
        e.contains(
            "server[1].proxy_protocol: 0.0.0.0:8080 has servers with and without proxy_protocol"
        ),
        "{e}"
    );
    let c = parse(&text.replace(
        "server_name = [\"b\"]",
        "server_name = [\"b\"]\nproxy_protocol = true",
    ))
    .unwrap();
    assert!(c.listeners[0].proxy_protocol);
    assert_eq!(
        c.servers[0].real_ip.as_ref().unwrap().header,
        RealIpHeader::ProxyProtocol
    );
}

#[test]
fn htpasswd_is_read_and_bad_lines_warned_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    let mut f = std::fs::File::create(&users).unwrap();
    writeln!(
        f,
        "alice:{{SHA}}O1hAcUlX7zkBbV+/3rmbDfUlbNM=\nbroken line\nbob:{{PLAIN}}pw"
    )
    .unwrap();
    let text = format!(
        r#"
[[server]]
listen = ["8080"]
auth_basic = "Staff"
auth_basic_user_file = "{}"

  [[server.location]]
  path = "/"
  return = {{ status = 204 }}

  [[server.location]]
  path = "/public/"
  auth_basic = "off"
  return = {{ status = 204 }}

  [[server.location]]
  path = "/other/"
  auth_basic = "Other"
  return = {{ status = 204 }}
"#,
        users.display()
    );
    let c = parse(&text).unwrap();
    let locs = &c.servers[0].locations;
    let auth = locs[0].edge.auth_basic.as_ref().unwrap();
    assert_eq!(auth.realm, "Staff");
    assert_eq!(auth.users.len(), 2);
    assert!(auth.users.verify("alice", b"secret pass"));
    assert!(locs[1].edge.auth_basic.is_none(), "auth_basic = off");
    let other = locs[2].edge.auth_basic.as_ref().unwrap();
    assert_eq!(other.realm, "Other", "realm replaced, file inherited");
    assert!(other.users.verify("bob", b"pw"));
    let w = c.warnings.join("\n");
    assert!(
        w.contains(&format!(
            "vigil.toml:5: server[0].auth_basic_user_file: {}:2: line skipped: not user:hash",
            users.display()
        )),
        "{w}"
    );
    assert!(!w.contains("SHA"), "no hash in warnings: {w}");
}

#[test]
fn auth_basic_in_a_location_without_any_file() {
    let text = r#"
[[server]]
listen = ["8080"]
  [[server.location]]
  path = "/"
  return = { status = 204 }
  [[server.location]]
  path = "/admin/"
  auth_basic = "Admin"
  return = { status = 204 }
"#;
    let e = problem(text);
    assert!(
        e.contains(
            "vigil.toml:9: server[0].location[1].auth_basic: auth_basic needs auth_basic_user_file"
        ),
        "{e}"
    );
}
