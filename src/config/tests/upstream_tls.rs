//! Config rules for TLS to upstreams.

use std::path::Path;

use rustls::pki_types::ServerName;

use crate::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/vigil/vigil.toml"))
}

fn with_location(proxy_pass: &str, upstreams: &str) -> String {
    format!(
        "[[server]]\nlisten = [\"8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"{proxy_pass}\"\n{upstreams}"
    )
}

fn problem(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn https_proxy_pass_makes_a_tls_upstream() {
    let c = parse(&with_location("https://127.0.0.1:9443/v1/", "")).unwrap();
    let up = &c.upstreams["127.0.0.1:9443"];
    let tls = up.tls.as_ref().unwrap();
    assert!(tls.verify && tls.ca.is_none() && tls.sni.is_none());
    assert_eq!(
        up.servers[0].tls_name,
        Some(ServerName::try_from("127.0.0.1").unwrap().to_owned())
    );

    // The default port is 443.
    let c = parse(&with_location("https://127.0.0.1", "")).unwrap();
    assert_eq!(c.upstreams["127.0.0.1"].servers[0].addr.port(), 443);

    // A name: verified and sent as SNI.
    let c = parse(&with_location("https://localhost:9443", "")).unwrap();
    let up = &c.upstreams["localhost:9443"];
    assert_eq!(
        up.servers[0].tls_name,
        Some(ServerName::try_from("localhost").unwrap().to_owned())
    );

    let c = parse(&with_location("http://127.0.0.1:9000", "")).unwrap();
    assert!(c.upstreams["127.0.0.1:9000"].tls.is_none());
    assert_eq!(c.upstreams["127.0.0.1:9000"].servers[0].tls_name, None);
}

#[test]
fn pool_tls_settings() {
    let c = parse(&with_location(
        "app",
        "[upstream.app]\nservers = [{ addr = \"127.0.0.1\" }, { addr = \"localhost:8443\" }]\ntls = { sni = \"app.internal\" }\n",
    ))
    .unwrap();
    let up = &c.upstreams["app"];
    assert_eq!(up.servers[0].addr.port(), 443, "TLS pools default to 443");
    let name = Some(ServerName::try_from("app.internal").unwrap().to_owned());
    assert!(up.servers.iter().all(|s| s.tls_name == name));

    // Without sni, each server's host as written.
    let c = parse(&with_location(
        "https://app",
        "[upstream.app]\nservers = [{ addr = \"localhost:8443\" }]\ntls = { verify = false }\n",
    ))
    .unwrap();
    let up = &c.upstreams["app"];
    assert!(!up.tls.as_ref().unwrap().verify);
    assert_eq!(
        up.servers[0].tls_name,
        Some(ServerName::try_from("localhost").unwrap().to_owned())
    );
}

#[test]
fn upstream_tls_mistakes_are_explained() {
    let e = problem(&with_location(
        "https://app",
        "[upstream.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
    ));
    assert!(e.contains("[upstream.app] does not use TLS"), "{e}");

    let e = problem(&with_location(
        "app",
        "[upstream.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\ntls = { sni = \"not a name\" }\n",
    ));
    assert!(
        e.contains("upstream.app.tls.sni") && e.contains("not a DNS name"),
        "{e}"
    );
    assert!(e.contains("1 problem"), "no knock-on errors: {e}");

    let e = problem(&with_location(
        "app",
        "[upstream.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\ntls = { verify = false, ca = \"/nonexistent/ca.pem\" }\n",
    ));
    assert!(e.contains("cannot read /nonexistent/ca.pem"), "{e}");

    let e = problem(&with_location(
        "app",
        "[upstream.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\ntls = { verfy = false }\n",
    ));
    assert!(e.contains("verfy"), "{e}");

    let text = "[[server]]\nlisten = [\"8080\"]\n\
        [[server.location]]\npath = \"/a/\"\nproxy_pass = \"http://127.0.0.1:9000\"\n\
        [[server.location]]\npath = \"/b/\"\nproxy_pass = \"https://127.0.0.1:9000\"\n";
    let e = problem(text);
    assert!(e.contains("both http:// and https://"), "{e}");

    let e = problem(&with_location("ftp://x", ""));
    assert!(e.contains("use http:// or https://"), "{e}");
}

#[test]
fn ca_without_verification_is_contradictory() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let upstream = |tls: &str| {
        format!(
            "[upstream.app]\nservers = [{{ addr = \"127.0.0.1:1\" }}]\ntls = {{ {tls}ca = \"{}\" }}\n",
            ca.display()
        )
    };
    let c = parse(&with_location("app", &upstream(""))).unwrap();
    let bundle = c.upstreams["app"]
        .tls
        .as_ref()
        .unwrap()
        .ca
        .as_ref()
        .unwrap();
    assert_eq!(bundle.certs.len(), 1);
    let e = problem(&with_location("app", &upstream("verify = false, ")));
    assert!(e.contains("ca has no effect with verify = false"), "{e}");

    // A file with no certificate in it.
    std::fs::write(&ca, "nothing here\n").unwrap();
    let e = problem(&with_location("app", &upstream("")));
    assert!(e.contains("no certificate found"), "{e}");
}
