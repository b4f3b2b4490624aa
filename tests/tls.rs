//! TLS integration tests: vigil in-process with certificates made at test
//! time, real rustls clients (and curl where installed), real backends.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use support::backend::{Backend, free_port};
use support::client;
use support::tls::{self as tlsc, H1, Leaf, TestCa};
use support::vigil::TestVigil;

const H2: &[u8] = b"h2";
const H11: &[u8] = b"http/1.1";

/// The certificates of the usual test setup.
struct Certs {
    ca: TestCa,
    example: Leaf,
    wildcard: Leaf,
    other: Leaf,
}

impl Certs {
    fn new() -> Certs {
        let ca = TestCa::new("vigil test CA");
        Certs {
            example: ca.leaf(&["example.test", "www.example.test"]),
            wildcard: ca.leaf(&["*.example.test"]),
            other: ca.leaf(&["other.test"]),
            ca,
        }
    }

    fn write(&self, dir: &Path) {
        self.example.write(dir, "example");
        self.wildcard.write(dir, "wildcard");
        self.other.write(dir, "other");
        self.ca.write(dir);
    }
}

/// Three TLS servers on one listener (example.test is the default), a
/// plain listener redirecting to it, and `[http]` settings `http`.
fn config(tls_port: u16, plain_port: u16, backend: SocketAddr, http: &str) -> String {
    format!(
        r#"
[log]
access_log = "off"

[http]
{http}

[[server]]
listen = ["127.0.0.1:{tls_port}"]
server_name = ["example.test", "www.example.test"]
default_server = true
tls = {{ cert = "example.pem", key = "example-key.pem" }}
hsts = "max-age=31536000"
  [[server.location]]
  path = "/"
  proxy_pass = "http://{backend}"

[[server]]
listen = ["127.0.0.1:{tls_port}"]
server_name = ["*.example.test"]
tls = {{ cert = "wildcard.pem", key = "wildcard-key.pem" }}
  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "wildcard $host\n" }}

[[server]]
listen = ["127.0.0.1:{tls_port}"]
server_name = ["other.test"]
tls = {{ cert = "other.pem", key = "other-key.pem" }}
  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "other\n" }}

[[server]]
listen = ["127.0.0.1:{plain_port}"]
redirect_https = true
https_port = {tls_port}
"#
    )
}

struct Setup {
    vigil: TestVigil,
    certs: Certs,
    tls: SocketAddr,
    plain: SocketAddr,
    _backend: Backend,
}

async fn setup(http: &str) -> Setup {
    let backend = Backend::start("app").await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    certs.write(dir.path());
    let (tls_port, plain_port) = (free_port(), free_port());
    let vigil = TestVigil::start_in(dir, &config(tls_port, plain_port, backend.addr, http)).await;
    Setup {
        tls: vigil.addr(&format!("127.0.0.1:{tls_port}")),
        plain: vigil.addr(&format!("127.0.0.1:{plain_port}")),
        vigil,
        certs,
        _backend: backend,
    }
}

#[tokio::test]
async fn sni_selects_the_certificate_with_wildcard_and_default() {
    let s = setup("").await;
    let cases = [
        ("example.test", &s.certs.example, "exact name"),
        ("www.example.test", &s.certs.example, "second name"),
        ("WWW.Example.Test", &s.certs.example, "any case"),
        ("shop.example.test", &s.certs.wildcard, "wildcard"),
        ("other.test", &s.certs.other, "another site"),
        ("unknown.test", &s.certs.example, "unknown name: default"),
    ];
    for (name, expected, why) in cases {
        let (_, hs) = tlsc::connect(s.tls, name, tlsc::inspecting_config(&[H11], true))
            .await
            .unwrap();
        assert!(hs.leaf == expected.der, "{name}: {why}");
    }
    // No SNI at all: the default server's certificate, not a failure.
    let (_, hs) = tlsc::connect(s.tls, "other.test", tlsc::inspecting_config(&[H11], false))
        .await
        .unwrap();
    assert!(hs.leaf == s.certs.example.der, "no SNI: default");
    // An IP address is never sent as SNI either.
    let (_, hs) = tlsc::connect(s.tls, "127.0.0.1", tlsc::inspecting_config(&[H11], true))
        .await
        .unwrap();
    assert!(hs.leaf == s.certs.example.der, "IP: default");
    // And the presented certificates verify for their names with the CA.
    for name in ["example.test", "a.example.test", "other.test"] {
        tlsc::connect(s.tls, name, tlsc::client_config(&s.certs.ca, &[H11]))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn alpn_h2_serves_http2_with_forwarded_proto_and_hsts() {
    let s = setup("").await;
    let config = tlsc::client_config(&s.certs.ca, &[H2, H11]);
    let (hs, reply) = tlsc::get_h2(s.tls, "example.test", config.clone(), "/x?y=1").await;
    assert_eq!(hs.alpn.as_deref(), Some(H2));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let seen = reply.json();
    assert_eq!(seen["uri"], "/x?y=1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        seen["headers"]["host"], "example.test",
        "Host from :authority"
    );
    assert_eq!(seen["version"], "HTTP/1.1", "h2 downstream, h1 upstream");

    let (_, reply) = tlsc::get_h2(s.tls, "shop.example.test", config, "/").await;
    assert_eq!(reply.text(), "wildcard shop.example.test\n");
    assert_eq!(
        reply.header("strict-transport-security"),
        None,
        "no hsts there"
    );
}

#[tokio::test]
async fn http11_over_tls_and_tls12() {
    let s = setup("").await;
    let mut conn = H1::open(
        s.tls,
        "example.test",
        tlsc::client_config(&s.certs.ca, &[H11]),
    )
    .await;
    assert_eq!(conn.handshake.alpn.as_deref(), Some(H11));
    for _ in 0..3 {
        let reply = conn.get("/keepalive").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["headers"]["x-forwarded-proto"], "https");
        assert!(reply.header("strict-transport-security").is_some());
    }

    // A client without ALPN gets HTTP/1.1.
    let mut conn = H1::open(s.tls, "other.test", tlsc::client_config(&s.certs.ca, &[])).await;
    assert_eq!(conn.handshake.alpn, None);
    assert_eq!(conn.get("/").await.text(), "other\n");

    // TLS 1.2 still works (and 1.3 is the default).
    assert_eq!(conn.handshake.version, rustls::ProtocolVersion::TLSv1_3);
    let mut tls12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(s.certs.ca.roots())
    .with_no_client_auth();
    tls12.alpn_protocols = vec![H11.to_vec()];
    let mut conn = H1::open(s.tls, "example.test", std::sync::Arc::new(tls12)).await;
    assert_eq!(conn.handshake.version, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(conn.get("/").await.status, 200);
}

#[tokio::test]
async fn http2_off_offers_only_http11() {
    let s = setup("http2 = false").await;
    let (_, hs) = tlsc::connect(
        s.tls,
        "example.test",
        tlsc::client_config(&s.certs.ca, &[H2, H11]),
    )
    .await
    .unwrap();
    assert_eq!(hs.alpn.as_deref(), Some(H11));
}

#[tokio::test]
async fn redirect_https_keeps_host_uri_and_port() {
    let s = setup("").await;
    let reply = client::send(
        s.plain,
        client::request("GET", "/a/b?c=1", &[("host", "Shop.Example.Test:8080")], ""),
    )
    .await;
    assert_eq!(reply.status, 301);
    let port = s.tls.port();
    assert_eq!(
        reply.header("location"),
        Some(format!("https://shop.example.test:{port}/a/b?c=1").as_str())
    );
    assert_eq!(
        reply.header("strict-transport-security"),
        None,
        "not over http"
    );

    // Without https_port the redirect goes to the default port 443.
    let plain_port = free_port();
    let vigil = TestVigil::start(&format!(
        "[log]\naccess_log = \"off\"\n[[server]]\nlisten = [\"127.0.0.1:{plain_port}\"]\nredirect_https = true\n"
    )).await;
    let reply = client::send(
        vigil.first_addr(),
        client::request("GET", "/x", &[("host", "example.test")], ""),
    )
    .await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("https://example.test/x"));
}

#[tokio::test]
async fn curl_with_resolve_sees_sni_certificates_and_http2() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let s = setup("").await;
    let ca = s.vigil.dir.path().join("ca.pem");
    let port = s.tls.port();
    // curl verifies the certificate against the name: each of these would
    // fail if the wrong certificate were chosen.
    let curl = async |name: &str, extra: &[&str]| {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{name}:{port}:127.0.0.1"))
            .args(extra)
            .arg(format!("https://{name}:{port}/"))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "curl {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        curl("a.example.test", &[]).await,
        "wildcard a.example.test\n",
        "$host has no port"
    );
    assert_eq!(curl("other.test", &[]).await, "other\n");
    let out = curl(
        "example.test",
        &["-o", "/dev/null", "-w", "%{http_version} %{response_code}"],
    )
    .await;
    assert_eq!(out, "2 200", "curl negotiates h2 by ALPN");
    let out = curl(
        "www.example.test",
        &["--http1.1", "-o", "/dev/null", "-w", "%{http_version}"],
    )
    .await;
    assert_eq!(out, "1.1");
    let out = curl("example.test", &["-o", "/dev/null", "-D", "-"]).await;
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
}

#[tokio::test]
async fn upstream_tls_verifies_against_the_configured_ca() {
    let backend_ca = TestCa::new("backend CA");
    let leaf = backend_ca.leaf(&["backend.test", "127.0.0.1"]);
    let (backend, _task) = tlsc::tls_backend("secure", &leaf).await;
    let stranger = TestCa::new("unrelated CA").leaf(&["backend.test", "127.0.0.1"]);
    let (impostor, _task2) = tlsc::tls_backend("impostor", &stranger).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("backend-ca.pem"), &backend_ca.pem).unwrap();
    let port = free_port();
    let vigil = TestVigil::start_in(
        dir,
        &format!(
            r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/named/"
  proxy_pass = "named"
  [[server.location]]
  path = "/by-ip/"
  proxy_pass = "https://by_ip"
  [[server.location]]
  path = "/wrong-name/"
  proxy_pass = "wrong_name"
  [[server.location]]
  path = "/impostor/"
  proxy_pass = "impostor"
  [[server.location]]
  path = "/public-roots/"
  proxy_pass = "https://{backend}"
  [[server.location]]
  path = "/no-verify/"
  proxy_pass = "no_verify"

[upstream.named]
servers = [{{ addr = "{backend}" }}]
tls = {{ ca = "backend-ca.pem", sni = "backend.test" }}
health_check = {{ path = "/health", interval = "100ms", rise = 1, fall = 1 }}

[upstream.by_ip]
servers = [{{ addr = "{backend}" }}]
tls = {{ ca = "backend-ca.pem" }}

[upstream.wrong_name]
servers = [{{ addr = "{backend}" }}]
tls = {{ ca = "backend-ca.pem", sni = "elsewhere.test" }}

[upstream.impostor]
servers = [{{ addr = "{impostor}" }}]
tls = {{ ca = "backend-ca.pem", sni = "backend.test" }}
health_check = {{ path = "/health", interval = "100ms", rise = 1, fall = 1 }}

[upstream.no_verify]
servers = [{{ addr = "{impostor}" }}]
tls = {{ verify = false, sni = "backend.test" }}
"#
        ),
    )
    .await;
    let addr = vigil.first_addr();
    let mut conn = client::Conn::open(addr).await;

    let r = conn.get("/named/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "secure sni=backend.test host=test",
        "SNI = configured name"
    );
    // Keep-alive to the TLS upstream: a second request reuses it.
    assert_eq!(conn.get("/named/y").await.status, 200);

    let r = conn.get("/by-ip/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "secure sni=- host=test",
        "an IP is verified, not sent"
    );

    for (path, why) in [
        ("/wrong-name/x", "certificate not valid for the name"),
        ("/impostor/x", "certificate from another CA"),
        ("/public-roots/x", "test CA is not a public root"),
    ] {
        let r = conn.get(path).await;
        assert_eq!(r.status, 502, "{path}: {why}: {}", r.text());
    }

    let r = conn.get("/no-verify/x").await;
    assert_eq!(r.status, 200, "verify = false accepts it: {}", r.text());
    assert_eq!(r.text(), "impostor sni=backend.test host=test");

    // Health checks speak TLS with the pool's settings too.
    let healthy = |pool: &str| vigil.app.server.runtime().pools[pool].peers[0].is_healthy();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while healthy("impostor") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!healthy("impostor"), "checks fail verification");
    // A few more rounds: plain-HTTP checks would have failed by now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(healthy("named"), "checks pass over TLS");
}

#[tokio::test]
async fn reload_swaps_certificates_without_dropping_connections() {
    let s = setup("").await;
    let config = || tlsc::client_config(&s.certs.ca, &[H11]);
    let dir = s.vigil.dir.path();
    let config_text = std::fs::read_to_string(&s.vigil.config_path).unwrap();

    let mut old = H1::open(s.tls, "other.test", config()).await;
    assert!(old.handshake.leaf == s.certs.other.der);
    assert_eq!(old.get("/").await.text(), "other\n");

    // Rotate other.test's certificate and reload.
    let rotated = s.certs.ca.leaf(&["other.test"]);
    rotated.write(dir, "other");
    s.vigil
        .reload(&config_text)
        .await
        .expect("reload with a new certificate");

    let mut new = H1::open(s.tls, "other.test", config()).await;
    assert!(
        new.handshake.leaf == rotated.der,
        "new connection: new cert"
    );
    assert_eq!(new.get("/").await.text(), "other\n");
    // The connection made before the reload keeps working.
    assert_eq!(old.get("/").await.text(), "other\n");
    assert_eq!(old.get("/").await.status, 200);

    // A key that does not belong to the certificate: the reload fails,
    // says why, and the running certificate stays.
    let unrelated = s.certs.ca.leaf(&["other.test"]);
    std::fs::write(dir.join("other-key.pem"), &unrelated.key_pem).unwrap();
    let err = s.vigil.reload(&config_text).await.unwrap_err();
    assert!(err.contains("does not match the certificate"), "{err}");
    assert!(err.contains("other-key.pem"), "{err}");
    assert!(err.contains("server[2].tls.key"), "{err}");
    let mut after = H1::open(s.tls, "other.test", config()).await;
    assert!(after.handshake.leaf == rotated.der, "kept the running cert");
    assert_eq!(after.get("/").await.status, 200);

    // A missing file: same.
    std::fs::remove_file(dir.join("other.pem")).unwrap();
    let err = s.vigil.reload(&config_text).await.unwrap_err();
    assert!(
        err.contains("cannot read") && err.contains("other.pem"),
        "{err}"
    );
    assert_eq!(old.get("/").await.status, 200, "old connection still fine");
}

#[tokio::test]
async fn plain_http_to_the_https_port_gets_400_and_is_counted() {
    let s = setup("").await;
    let before = handshakes(&s.vigil);
    // Plain HTTP to the TLS port.
    let out = client::raw(
        s.tls,
        b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
        std::time::Duration::from_secs(2),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request"), "{out}");
    assert!(out.contains("This port expects HTTPS"), "{out}");
    wait_for_count(&s.vigil, before, "failed").await;
}

/// `vigil_tls_handshakes_total` by result.
fn handshakes(v: &TestVigil) -> [u64; 3] {
    ["ok", "failed", "timeout"]
        .map(|r| v.app.metrics().tls_handshakes.with_label_values(&[r]).get())
}

/// Waits until the handshake counter for `result` has moved past
/// `before`, and the error total with it: a connection is closed as its
/// handshake ends, a moment before the counter moves.
async fn wait_for_count(v: &TestVigil, before: [u64; 3], result: &str) {
    let i = ["ok", "failed", "timeout"]
        .iter()
        .position(|r| *r == result)
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let now = handshakes(v);
        if now[i] > before[i] {
            let errors = v.app.metrics().tls_handshake_errors.get();
            assert!(errors >= now[1] + now[2] - before[1] - before[2]);
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{before:?} → {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Runs `vigil check` on `config` in `dir`: (exit ok, stdout + stderr).
fn check(dir: &Path, config: &str) -> (bool, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn one_tls_server(cert: &str, key: &str, names: &str) -> String {
    format!(
        r#"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = [{names}]
tls = {{ cert = "{cert}", key = "{key}" }}
  [[server.location]]
  path = "/"
  return = {{ status = 200 }}
"#
    )
}

#[test]
fn check_reports_certificate_problems_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("check CA");
    ca.leaf(&["example.test"]).write(d, "good");
    let other = ca.leaf(&["example.test"]);
    std::fs::write(d.join("other-key.pem"), &other.key_pem).unwrap();
    ca.leaf_valid(&["example.test"], (2019, 1, 1), (2020, 6, 30))
        .write(d, "expired");
    ca.leaf_valid(&["example.test"], (2090, 1, 1), (2099, 1, 1))
        .write(d, "future");
    let names = r#""example.test""#;

    let (ok, out) = check(d, &one_tls_server("good.pem", "good-key.pem", names));
    assert!(ok, "{out}");
    assert!(!out.contains("warning"), "{out}");

    let (ok, out) = check(d, &one_tls_server("missing.pem", "good-key.pem", names));
    assert!(!ok);
    assert!(
        out.contains("server[0].tls.cert")
            && out.contains("cannot read")
            && out.contains("missing.pem"),
        "{out}"
    );

    let (ok, out) = check(d, &one_tls_server("good.pem", "other-key.pem", names));
    assert!(!ok);
    assert!(
        out.contains("server[0].tls.key") && out.contains("does not match the certificate"),
        "{out}"
    );

    let (ok, out) = check(d, &one_tls_server("good.pem", "good.pem", names));
    assert!(!ok);
    assert!(out.contains("no private key found"), "{out}");

    let (ok, out) = check(d, &one_tls_server("good-key.pem", "good-key.pem", names));
    assert!(!ok);
    assert!(out.contains("no certificate found"), "{out}");

    // Expired and not-yet-valid: warnings with the date; the check passes.
    let (ok, out) = check(d, &one_tls_server("expired.pem", "expired-key.pem", names));
    assert!(ok, "{out}");
    assert!(
        out.contains("warning:") && out.contains("expired on Tue, 30 Jun 2020"),
        "{out}"
    );
    let (ok, out) = check(d, &one_tls_server("future.pem", "future-key.pem", names));
    assert!(ok, "{out}");
    assert!(out.contains("not valid until Sun, 01 Jan 2090"), "{out}");

    // A server name the certificate does not cover.
    let (ok, out) = check(
        d,
        &one_tls_server("good.pem", "good-key.pem", r#""example.test", "shop.test""#),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("does not cover server_name \"shop.test\""),
        "{out}"
    );

    // Upstream CA problems.
    let (ok, out) = check(
        d,
        "[[server]]\nlisten = [\"8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n\
         [upstream.u]\nservers = [{ addr = \"127.0.0.1:1\" }]\ntls = { ca = \"nope.pem\" }\n",
    );
    assert!(!ok);
    assert!(
        out.contains("upstream.u.tls.ca") && out.contains("cannot read"),
        "{out}"
    );
}

#[tokio::test]
async fn dev_cert_script_output_serves_every_key_format() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/make-dev-certs.sh");
    let out = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || Command::new(script).arg(d).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let server = |name: &str, file: &str, default: bool| {
        format!(
            "[[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"{name}\"]\n\
             default_server = {default}\n\
             tls = {{ cert = \"{file}.pem\", key = \"{file}-key.pem\" }}\n\
             [[server.location]]\npath = \"/\"\nreturn = {{ status = 200, body = \"{file}\\n\" }}\n"
        )
    };
    let config = format!(
        "[log]\naccess_log = \"off\"\n{}{}{}{}",
        server("localhost", "localhost", true),
        server("example.test", "example.test", false),
        server("*.example.test", "wildcard.example.test", false),
        server("other.test", "other.test", false),
    );
    let (ok, out) = check(dir.path(), &config);
    assert!(ok && !out.contains("warning"), "{out}");

    let vigil = TestVigil::start_in(dir, &config).await;
    let ca_pem = std::fs::read(vigil.dir.path().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![H11.to_vec()];
    let config = std::sync::Arc::new(config);
    // Each verifies through the intermediate, so the chain is sent whole.
    for (name, body) in [
        ("localhost", "localhost\n"),
        ("example.test", "example.test\n"),
        ("a.example.test", "wildcard.example.test\n"),
        ("other.test", "other.test\n"),
    ] {
        let mut conn = H1::open(vigil.first_addr(), name, config.clone()).await;
        assert_eq!(conn.get("/").await.text(), body, "{name}");
    }
}

#[tokio::test]
async fn websocket_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ws_addr, _task) = support::backend::websocket_echo().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    certs.write(dir.path());
    let port = free_port();
    let vigil = TestVigil::start_in(
        dir,
        &format!(
            "[log]\naccess_log = \"off\"\n[[server]]\nlisten = [\"127.0.0.1:{port}\"]\n\
             tls = {{ cert = \"example.pem\", key = \"example-key.pem\" }}\n\
             [[server.location]]\npath = \"/ws\"\nproxy_pass = \"http://{ws_addr}\"\nwebsocket = true\n"
        ),
    )
    .await;
    let (stream, _) = tlsc::connect(
        vigil.first_addr(),
        "example.test",
        tlsc::client_config(&certs.ca, &[H11]),
    )
    .await
    .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://example.test/ws", stream)
        .await
        .unwrap();
    for i in 0..3 {
        ws.send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), format!("hello {i}"));
    }
}

#[tokio::test]
async fn silent_clients_are_cut_off_after_client_header_timeout() {
    let s = setup("client_header_timeout = \"300ms\"").await;
    let before = handshakes(&s.vigil);
    let started = std::time::Instant::now();
    // Connect and send nothing: the handshake never starts.
    let out = client::raw(s.tls, b"", std::time::Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(out.is_empty(), "{out:?}");
    assert!(
        waited >= std::time::Duration::from_millis(250)
            && waited < std::time::Duration::from_secs(3),
        "closed after {waited:?}"
    );
    wait_for_count(&s.vigil, before, "timeout").await;
}

#[tokio::test]
async fn sessions_resume_across_connections_and_reloads() {
    let s = setup("").await;
    for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[versions])
        .unwrap()
        .with_root_certificates(s.certs.ca.roots())
        .with_no_client_auth();
        config.alpn_protocols = vec![H11.to_vec()];
        // One config = one client session cache, as in a browser.
        let config = std::sync::Arc::new(config);
        let mut first = H1::open(s.tls, "example.test", config.clone()).await;
        assert!(!first.handshake.resumed);
        // TLS 1.3 tickets arrive after the handshake; a request reads them.
        assert_eq!(first.get("/").await.status, 200);
        let mut second = H1::open(s.tls, "example.test", config.clone()).await;
        assert!(second.handshake.resumed, "{versions:?}: resumed");
        assert_eq!(second.get("/").await.status, 200);

        let text = std::fs::read_to_string(&s.vigil.config_path).unwrap();
        s.vigil.reload(&text).await.unwrap();
        let mut third = H1::open(s.tls, "example.test", config).await;
        assert!(
            third.handshake.resumed,
            "{versions:?}: resumed after a reload"
        );
        assert_eq!(third.get("/").await.status, 200);
    }
}
