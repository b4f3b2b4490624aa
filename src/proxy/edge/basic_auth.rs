//! `auth_basic`: the `Authorization: Basic` header checked against the
//! location's htpasswd users.
//!
//! bcrypt and SHA-crypt cost milliseconds of CPU by design, so a check of
//! such a hash runs on tokio's blocking pool, never on a worker (a worker
//! blocked for 100 ms stalls every connection it serves), and at most
//! [`MAX_COSTLY_CHECKS`] run at once. A password once verified is
//! remembered as an HMAC of (file, user, password) under a per-process
//! random key, so the next request of that user costs one HMAC; the memory
//! is per config generation (a reload re-reads the file and starts empty),
//! bounded, and holds nothing from which a password could be recovered.
//!
//! The password is never logged; `$remote_user` is the user name only.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use ring::hmac;
use tokio::sync::Semaphore;

use super::super::body::Body;
use super::super::respond;
use crate::config::edge::BasicAuth;

/// Costly hash checks running at once (each holds a blocking thread).
pub(crate) const MAX_COSTLY_CHECKS: usize = 8;
/// Verified credentials remembered per config generation.
const CACHE_ENTRIES: usize = 4096;

/// Verified credentials and the gate for costly checks, for one config
/// generation.
pub(crate) struct AuthCache {
    key: hmac::Key,
    verified: Mutex<HashSet<[u8; 32]>>,
    costly: Arc<Semaphore>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache").finish_non_exhaustive()
    }
}

impl Default for AuthCache {
    fn default() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            // The system's random source failing is not recoverable; a
            // fixed key would only weaken the cache, so derive one from
            // the clock and address space instead of refusing to start.
            .unwrap_or_else(|_| {
                let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &rng);
                hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes())
            });
        AuthCache {
            key,
            verified: Mutex::new(HashSet::new()),
            costly: Arc::new(Semaphore::new(MAX_COSTLY_CHECKS)),
        }
    }
}

impl AuthCache {
    fn tag(&self, auth: &BasicAuth, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(auth.users.path.as_os_str().as_encoded_bytes());
        ctx.update(&[0]);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn remembers(&self, tag: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tag)
    }

    fn remember(&self, tag: [u8; 32]) {
        let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= CACHE_ENTRIES {
            // Simple and bounded: start over (the next request of each
            // user pays one check again).
            set.clear();
        }
        set.insert(tag);
    }
}

/// `user:password` from an `Authorization: Basic` header.
pub(crate) fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = rest.trim_ascii();
    let decoded = BASE64.decode(encoded).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Checks the request's credentials: the user name when they are good,
/// else the 401 to send.
pub(crate) async fn check(
    auth: &BasicAuth,
    cache: &AuthCache,
    headers: &HeaderMap,
) -> Result<String, Response<Body>> {
    let Some((user, password)) = credentials(headers) else {
        return Err(unauthorized(auth));
    };
    let ok = if auth.users.is_costly(&user) {
        let tag = cache.tag(auth, &user, &password);
        if cache.remembers(&tag) {
            true
        } else {
            let ok = costly_verify(auth, cache, &user, password).await;
            if ok {
                cache.remember(tag);
            }
            ok
        }
    } else {
        auth.users.verify(&user, &password)
    };
    if ok {
        Ok(user)
    } else {
        // nginx logs these at error level with the user name; the
        // password never.
        tracing::info!(user = %user, realm = %auth.realm, "basic auth refused");
        Err(unauthorized(auth))
    }
}

async fn costly_verify(auth: &BasicAuth, cache: &AuthCache, user: &str, password: Vec<u8>) -> bool {
    let Ok(_permit) = cache.costly.clone().acquire_owned().await else {
        return false;
    };
    let users = auth.users.clone();
    let user = user.to_owned();
    tokio::task::spawn_blocking(move || users.verify(&user, &password))
        .await
        .unwrap_or(false)
}

/// 401 with the challenge (RFC 7617 §2; the charset parameter tells
/// browsers to send UTF-8).
fn unauthorized(auth: &BasicAuth) -> Response<Body> {
    let mut r = respond::status(StatusCode::UNAUTHORIZED);
    let challenge = format!("Basic realm=\"{}\"", auth.realm);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::htpasswd::Htpasswd;

    fn auth(file: &str) -> BasicAuth {
        BasicAuth {
            realm: "Staff only".into(),
            users: Arc::new(Htpasswd::parse(Path::new("/x/htpasswd"), file).0),
        }
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user_pass: &str) -> HeaderMap {
        with_auth(&format!("Basic {}", BASE64.encode(user_pass)))
    }

    #[test]
    fn credentials_parse_as_rfc_7617() {
        assert_eq!(
            credentials(&basic("alice:pa:ss")),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            credentials(&basic("alice:")),
            Some(("alice".into(), vec![]))
        );
        assert_eq!(
            credentials(&with_auth(&format!("bAsIc   {}", BASE64.encode("a:b")))),
            Some(("a".into(), b"b".to_vec()))
        );
        assert_eq!(credentials(&basic("no colon")), None);
        assert_eq!(credentials(&with_auth("Bearer abc")), None);
        assert_eq!(credentials(&with_auth("Basic !!!")), None);
        assert_eq!(credentials(&with_auth("Basic")), None);
        assert_eq!(credentials(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn good_bad_and_missing_credentials() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let a = auth(&format!("alice:{{PLAIN}}pw\nbob:{hash}\n"));
        let cache = AuthCache::default();
        assert_eq!(
            check(&a, &cache, &basic("alice:pw")).await.unwrap(),
            "alice"
        );
        assert_eq!(
            check(&a, &cache, &basic("bob:s3cret")).await.unwrap(),
            "bob"
        );
        // The second time comes from the cache (same answer).
        assert_eq!(
            check(&a, &cache, &basic("bob:s3cret")).await.unwrap(),
            "bob"
        );
        assert_eq!(cache.verified.lock().unwrap().len(), 1);
        for bad in [
            basic("bob:wrong"),
            basic("alice:PW"),
            basic("carol:pw"),
            HeaderMap::new(),
        ] {
            let r = check(&a, &cache, &bad).await.unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                r.headers()[header::WWW_AUTHENTICATE],
                "Basic realm=\"Staff only\""
            );
        }
        // A wrong password is never remembered.
        assert_eq!(cache.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn cache_is_bounded() {
        let cache = AuthCache::default();
        let a = auth("");
        for i in 0..(CACHE_ENTRIES + 10) {
            cache.remember(cache.tag(&a, "u", i.to_string().as_bytes()));
        }
        assert!(cache.verified.lock().unwrap().len() <= CACHE_ENTRIES);
    }
}
