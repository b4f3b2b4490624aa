//! `auth_basic_user_file`: an htpasswd file, read at load (and so on
//! every reload), each line `user:hash`.
//!
//! The hash formats nginx accepts on Linux: bcrypt (`$2y$`, `$2a$`,
//! `$2b$`), SHA-crypt (`$5$`, `$6$`), MD5-crypt (`$apr1$` as Apache's
//! htpasswd writes it, and `$1$`), `{SHA}` and `{SSHA}` (base64 SHA-1,
//! salted or not) and `{PLAIN}`. Traditional DES crypt (13 characters, no
//! `$`) is not supported: a line with it is reported and skipped.
//!
//! A line that cannot be used is reported with the file and line number
//! and the rest of the file is kept, so one typo does not lock everyone
//! out. Nothing reported ever contains a hash or a password.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The users of one htpasswd file.
#[derive(Clone, PartialEq, Eq)]
pub struct Htpasswd {
    pub path: PathBuf,
    users: HashMap<String, PasswordHash>,
}

impl std::fmt::Debug for Htpasswd {
    /// Names the file and the number of users, never the hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .finish()
    }
}

/// A line that was skipped: its 1-based number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub line: usize,
    pub reason: String,
}

/// A stored password hash, checked for shape when the file is read.
#[derive(Clone, PartialEq, Eq)]
enum PasswordHash {
    /// The whole `$2y$NN$...` string, for the bcrypt crate.
    Bcrypt(String),
    /// The whole `$5$...` / `$6$...` string, for the sha-crypt crate.
    ShaCrypt(String),
    /// MD5-crypt: `magic` is `$apr1$` or `$1$`.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        hash: String,
    },
    /// `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{SSHA}base64(sha1(password + salt) + salt)`.
    SaltedSha1 { digest: [u8; 20], salt: Vec<u8> },
    /// `{PLAIN}password`.
    Plain(String),
}

impl Htpasswd {
    /// Reads and parses `path`. An unreadable file is an error; lines that
    /// cannot be used are returned beside the users that can.
    pub fn load(path: &Path) -> Result<(Htpasswd, Vec<SkippedLine>), String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Self::parse(path, &String::from_utf8_lossy(&text)))
    }

    /// Parses the text of an htpasswd file.
    pub fn parse(path: &Path, text: &str) -> (Htpasswd, Vec<SkippedLine>) {
        let mut users = HashMap::new();
        let mut skipped = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                skipped.push(SkippedLine {
                    line: line_no,
                    reason: "not user:hash".into(),
                });
                continue;
            };
            // Apache allows extra `:field`s after the hash; nginx stops
            // at the next colon too.
            let hash = hash.split(':').next().unwrap_or_default();
            if user.is_empty() {
                skipped.push(SkippedLine {
                    line: line_no,
                    reason: "empty user name".into(),
                });
                continue;
            }
            match PasswordHash::parse(hash) {
                // nginx uses the first line for a user; say so.
                Ok(_) if users.contains_key(user) => skipped.push(SkippedLine {
                    line: line_no,
                    reason: format!("user {user:?} is listed again; the first line counts"),
                }),
                Ok(h) => {
                    users.insert(user.to_owned(), h);
                }
                Err(why) => skipped.push(SkippedLine {
                    line: line_no,
                    reason: format!("user {user:?}: {why}"),
                }),
            }
        }
        (
            Htpasswd {
                path: path.to_owned(),
                users,
            },
            skipped,
        )
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks `password` for `user`. An unknown user costs as much as a
    /// wrong password would for a cheap hash; bcrypt and SHA-crypt cost
    /// what their parameters say (run this off the I/O thread).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(h) => h.verify(password),
            None => {
                // Same work as a {SHA} line, so a missing user is not
                // told apart by a much shorter answer.
                let _ = PasswordHash::Sha1([0; 20]).verify(password);
                false
            }
        }
    }

    /// True when checking `user`'s password is expensive enough (bcrypt,
    /// SHA-crypt, MD5-crypt) to be worth caching and running off the
    /// worker thread.
    pub fn is_costly(&self, user: &str) -> bool {
        matches!(
            self.users.get(user),
            Some(
                PasswordHash::Bcrypt(_) | PasswordHash::ShaCrypt(_) | PasswordHash::Md5Crypt { .. }
            )
        )
    }
}

impl PasswordHash {
    fn parse(hash: &str) -> Result<PasswordHash, String> {
        if let Some(rest) = hash.strip_prefix("{SHA}") {
            let bytes = BASE64
                .decode(rest)
                .map_err(|_| "{SHA} hash is not base64".to_owned())?;
            let digest: [u8; 20] = bytes
                .try_into()
                .map_err(|_| "{SHA} hash is not 20 bytes".to_owned())?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if let Some(rest) = hash.strip_prefix("{SSHA}") {
            let bytes = BASE64
                .decode(rest)
                .map_err(|_| "{SSHA} hash is not base64".to_owned())?;
            if bytes.len() <= 20 {
                return Err("{SSHA} hash has no salt".into());
            }
            let (digest, salt) = bytes.split_at(20);
            return Ok(PasswordHash::SaltedSha1 {
                digest: digest.try_into().map_err(|_| "bad {SSHA}".to_owned())?,
                salt: salt.to_vec(),
            });
        }
        if let Some(rest) = hash.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(rest.to_owned()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = hash.strip_prefix(magic) {
                let (salt, digest) = rest
                    .split_once('$')
                    .ok_or_else(|| format!("{magic} hash has no salt"))?;
                if salt.len() > 8 || digest.len() != 22 || !digest.bytes().all(is_crypt64) {
                    return Err(format!("malformed {magic} hash"));
                }
                return Ok(PasswordHash::Md5Crypt {
                    magic,
                    salt: salt.to_owned(),
                    hash: digest.to_owned(),
                });
            }
        }
        if ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            // $2x$NN$ + 22 salt + 31 hash characters.
            let b = hash.as_bytes();
            let cost_ok = b.len() == 60
                && b[6] == b'$'
                && hash[4..6]
                    .parse::<u32>()
                    .is_ok_and(|c| (4..=31).contains(&c));
            if !cost_ok || !b[7..].iter().all(|&c| is_crypt64(c)) {
                return Err("malformed bcrypt hash".into());
            }
            return Ok(PasswordHash::Bcrypt(hash.to_owned()));
        }
        if hash.starts_with("$5$") || hash.starts_with("$6$") {
            sha_crypt::PasswordHashRef::new(hash)
                .map_err(|_| "malformed SHA-crypt hash".to_owned())?;
            return Ok(PasswordHash::ShaCrypt(hash.to_owned()));
        }
        if hash.len() == 13 && hash.bytes().all(is_crypt64) {
            return Err(
                "traditional DES crypt hashes are not supported; use bcrypt \
                 (htpasswd -B) or SHA-crypt"
                    .into(),
            );
        }
        Err(
            "unknown hash format; use bcrypt ($2y$), SHA-crypt ($5$, $6$), apr1, {SHA} or {SSHA}"
                .into(),
        )
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::ShaCrypt(h) => {
                use sha_crypt::PasswordVerifier;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, h.as_str())
                    .is_ok()
            }
            PasswordHash::Md5Crypt { magic, salt, hash } => {
                let computed = md5_crypt(password, magic.as_bytes(), salt.as_bytes());
                bool::from(computed.as_bytes().ct_eq(hash.as_bytes()))
            }
            PasswordHash::Sha1(digest) => {
                let computed: [u8; 20] = Sha1::digest(password).into();
                bool::from(computed.ct_eq(digest))
            }
            PasswordHash::SaltedSha1 { digest, salt } => {
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                let computed: [u8; 20] = h.finalize().into();
                bool::from(computed.ct_eq(digest))
            }
            PasswordHash::Plain(p) => bool::from(p.as_bytes().ct_eq(password)),
        }
    }
}

/// The alphabet of crypt(3)'s base-64 encoding.
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_crypt64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'/'
}

/// MD5-crypt (Poul-Henning Kamp's algorithm, used by `$1$` and Apache's
/// `$apr1$`): the 22-character encoded digest.
fn md5_crypt(password: &[u8], magic: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alternate: [u8; 16] = {
        let mut h = Md5::new();
        h.update(password);
        h.update(salt);
        h.update(password);
        h.finalize().into()
    };
    let mut h = Md5::new();
    h.update(password);
    h.update(magic);
    h.update(salt);
    for chunk in password.chunks(16) {
        h.update(&alternate[..chunk.len()]);
    }
    // For each bit of the length: a zero byte for a one bit, the first
    // byte of the password for a zero bit.
    let mut n = password.len();
    while n > 0 {
        if n & 1 == 1 {
            h.update([0u8]);
        } else {
            h.update(&password[..1]);
        }
        n >>= 1;
    }
    let mut digest: [u8; 16] = h.finalize().into();
    // 1000 rounds to make guessing slower.
    for round in 0..1000 {
        let mut h = Md5::new();
        if round & 1 == 1 {
            h.update(password);
        } else {
            h.update(digest);
        }
        if round % 3 != 0 {
            h.update(salt);
        }
        if round % 7 != 0 {
            h.update(password);
        }
        if round & 1 == 1 {
            h.update(digest);
        } else {
            h.update(password);
        }
        digest = h.finalize().into();
    }
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, chars: usize| {
        let mut v = v;
        for _ in 0..chars {
            out.push(char::from(CRYPT64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let d = |i: usize| u32::from(digest[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((d(a) << 16) | (d(b) << 8) | d(c), 4);
    }
    put(d(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Made with `openssl passwd -apr1|-1|-5|-6 -salt sAlT1234 'secret pass'`.
    const FILE: &str = "\
# comment
apr:$apr1$sAlT1234$C6Td00y5SVZuzXWX2RtIO0
md5:$1$sAlT1234$J3QUrI/6HO7jBLY6KpYvK/
sha256:$5$sAlT1234$51khTztVFyx/GVWZa3yQCLaPjlGu03R2I232pkwAF3.
sha512:$6$sAlT1234$FQqnlpEPxlBiZKjXfNrUrQAXZcARm2I19cOEtfEb2SVF8GYoI//ypN3pTDCl1WjSLNzhMU1IDkXVS5oG7qKE1/
sha1:{SHA}O1hAcUlX7zkBbV+/3rmbDfUlbNM=
plain:{PLAIN}secret pass
bcrypt:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW
bcrypty:$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW

des:abJnggxhB/yWI
broken
:$apr1$x$y
weird:$9$nope
short:$apr1$sAlT1234$C6Td00
bad64:{SHA}!!!
apr:{PLAIN}second
crlf:{PLAIN}x\r
";

    fn parsed() -> (Htpasswd, Vec<SkippedLine>) {
        Htpasswd::parse(Path::new("/etc/vigil/htpasswd"), FILE)
    }

    #[test]
    fn every_supported_format_verifies() {
        let (h, _) = parsed();
        for user in ["apr", "md5", "sha256", "sha512", "sha1", "plain"] {
            assert!(h.verify(user, b"secret pass"), "{user}");
            assert!(!h.verify(user, b"secret pasS"), "{user}");
            assert!(!h.verify(user, b""), "{user}");
        }
        // The OpenBSD test vector: password "U*U".
        assert!(h.verify("bcrypt", b"U*U"));
        assert!(h.verify("bcrypty", b"U*U"));
        assert!(!h.verify("bcrypt", b"U*V"));
        assert!(h.verify("crlf", b"x"));
        assert!(!h.verify("nobody", b"secret pass"));
        assert!(h.is_costly("bcrypt") && h.is_costly("apr") && h.is_costly("sha512"));
        assert!(!h.is_costly("sha1") && !h.is_costly("nobody"));
    }

    #[test]
    fn bad_lines_are_named_and_the_rest_kept() {
        let (h, skipped) = parsed();
        assert_eq!(h.len(), 9, "{h:?}");
        let lines: Vec<usize> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![11, 12, 13, 14, 15, 16, 17], "{skipped:#?}");
        assert!(skipped[0].reason.contains("DES"), "{skipped:#?}");
        assert!(skipped[1].reason.contains("user:hash"));
        assert!(skipped[2].reason.contains("empty user"));
        assert!(skipped[6].reason.contains("first line counts"));
        // The first "apr" line is the one that counts.
        assert!(h.verify("apr", b"secret pass"));
        assert!(!h.verify("apr", b"second"));
        // Reasons never carry a hash.
        for s in &skipped {
            for secret in ["sAlT1234", "C6Td00", "abJngg", "nope", "second"] {
                assert!(!s.reason.contains(secret), "{s:?}");
            }
        }
    }

    #[test]
    fn debug_never_shows_hashes() {
        let (h, _) = parsed();
        let shown = format!("{h:?}");
        assert!(
            !shown.contains("apr1") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn bcrypt_made_by_the_crate_verifies() {
        let hash = bcrypt::hash("pw:with:colons", 4).unwrap();
        let (h, skipped) = Htpasswd::parse(Path::new("x"), &format!("u:{hash}\n"));
        assert!(skipped.is_empty(), "{skipped:?}");
        // The password may hold colons; the hash never does.
        assert!(h.verify("u", b"pw:with:colons"));
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Htpasswd::load(Path::new("/nonexistent/htpasswd")).unwrap_err();
        assert!(e.contains("/nonexistent/htpasswd"), "{e}");
    }

    proptest! {
        /// Any text parses without panicking, and any password check on
        /// it returns.
        #[test]
        fn parse_and_verify_total(text in "\\PC{0,200}", user in "\\PC{0,8}", pw in proptest::collection::vec(any::<u8>(), 0..20)) {
            let (h, _) = Htpasswd::parse(Path::new("x"), &text);
            let _ = h.verify(&user, &pw);
        }

        /// MD5-crypt agrees with itself through the file format.
        #[test]
        fn md5_crypt_round_trip(pw in proptest::collection::vec(any::<u8>(), 1..40), salt in "[./a-zA-Z0-9]{1,8}") {
            let line = format!("u:$apr1${salt}${}", md5_crypt(&pw, b"$apr1$", salt.as_bytes()));
            let (h, skipped) = Htpasswd::parse(Path::new("x"), &line);
            prop_assert!(skipped.is_empty());
            prop_assert!(h.verify("u", &pw));
        }
    }
}
