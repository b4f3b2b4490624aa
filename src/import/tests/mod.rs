//! Translation tests: one small config per directive or idiom, read from
//! memory, the output read back as TOML.

use super::files::Memory;
use super::report::Status;
use super::*;

pub(super) fn nginx(conf: &str) -> (toml::Table, Report) {
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

pub(super) fn http(body: &str) -> (toml::Table, Report) {
    nginx(&format!("events {{}}\nhttp {{\n{body}\n}}\n"))
}

pub(super) fn servers(t: &toml::Table) -> &Vec<toml::Value> {
    t["server"].as_array().unwrap()
}

pub(super) fn locations(t: &toml::Table, server: usize) -> &Vec<toml::Value> {
    servers(t)[server]["location"].as_array().unwrap()
}

pub(super) fn location<'a>(t: &'a toml::Table, server: usize, path: &str) -> &'a toml::Value {
    locations(t, server)
        .iter()
        .find(|l| l["path"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("no location {path:?} in {t:#?}"))
}

pub(super) fn has(r: &Report, directive_start: &str, status: Status) -> bool {
    r.items
        .iter()
        .any(|i| i.directive.starts_with(directive_start) && i.status == status)
}

mod keepalived;
mod nginx_locations;
mod nginx_servers;
