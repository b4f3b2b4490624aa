//! The self-probe's marker: a header carrying a token random per process.
//! It lives here, with the side that answers it (the handler replies 204
//! before routing, logging or counting); the liveness monitor imports it
//! to send the probe. Random per process, so a client can neither fake a
//! probe nor be answered as one.

use std::sync::OnceLock;

/// The header that marks a self-probe request.
pub const PROBE_HEADER: &str = "x-vigil-probe";

/// The token a self-probe carries in [`PROBE_HEADER`].
pub fn probe_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)))
}

/// True when `headers` carry this process's probe token.
pub(crate) fn is_probe(headers: &http::HeaderMap) -> bool {
    headers
        .get(PROBE_HEADER)
        .is_some_and(|v| v.as_bytes() == probe_token().as_bytes())
}
