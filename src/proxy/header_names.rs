//! Field names off the wire, the common ones without `http`'s general
//! parser.
//!
//! `HeaderName::from_bytes` maps every byte through a table into a
//! scratch buffer, then matches the result against all the names it knows:
//! ~115 instructions a field (callgrind), five to ten fields a proxied
//! request. Most heads spell the same few names in one of two ways, as
//! nginx, Apache and most frameworks write them (`Content-Type`) or in
//! lower case (HTTP/2 habits, Node): those are looked up by length and
//! then compared as fixed-size arrays, a few integer compares. Anything
//! else, any other spelling included, takes the general parser, so the
//! result is always the one `from_bytes` gives (tested below).

use http::header::{self, HeaderName, InvalidHeaderName};

/// `HeaderName::from_bytes(name)`, faster for the usual names.
pub fn from_wire(name: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    let known = match name.len() {
        4 => find(name, &LEN_4),
        6 => find(name, &LEN_6),
        7 => find(name, &LEN_7),
        8 => find(name, &LEN_8),
        10 => find(name, &LEN_10),
        12 => find(name, &LEN_12),
        13 => find(name, &LEN_13),
        14 => find(name, &LEN_14),
        15 => find(name, &LEN_15),
        16 => find(name, &LEN_16),
        17 => find(name, &LEN_17),
        _ => None,
    };
    match known {
        Some(n) => Ok(n.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// The entry spelled exactly `name`: fixed-size compares, no `memcmp`.
fn find<'t, const N: usize>(
    name: &[u8],
    table: &'t [([u8; N], HeaderName)],
) -> Option<&'t HeaderName> {
    let name: &[u8; N] = name.try_into().ok()?;
    table.iter().find(|(k, _)| k == name).map(|(_, n)| n)
}

/// Both spellings of each name, the more frequent first.
macro_rules! spellings {
    ($($canonical:literal $lower:literal => $name:expr),* $(,)?) => {
        [$((*$canonical, $name), (*$lower, $name)),*]
    };
}

static LEN_4: [([u8; 4], HeaderName); 8] = spellings![
    b"Date" b"date" => header::DATE,
    b"Host" b"host" => header::HOST,
    b"ETag" b"etag" => header::ETAG,
    b"Vary" b"vary" => header::VARY,
];
static LEN_6: [([u8; 6], HeaderName); 8] = spellings![
    b"Server" b"server" => header::SERVER,
    b"Accept" b"accept" => header::ACCEPT,
    b"Cookie" b"cookie" => header::COOKIE,
    b"Origin" b"origin" => header::ORIGIN,
];
static LEN_7: [([u8; 7], HeaderName); 6] = spellings![
    b"Expires" b"expires" => header::EXPIRES,
    b"Referer" b"referer" => header::REFERER,
    b"Upgrade" b"upgrade" => header::UPGRADE,
];
static LEN_8: [([u8; 8], HeaderName); 2] = spellings![
    b"Location" b"location" => header::LOCATION,
];
static LEN_10: [([u8; 10], HeaderName); 6] = spellings![
    b"Connection" b"connection" => header::CONNECTION,
    b"Set-Cookie" b"set-cookie" => header::SET_COOKIE,
    b"User-Agent" b"user-agent" => header::USER_AGENT,
];
static LEN_12: [([u8; 12], HeaderName); 2] = spellings![
    b"Content-Type" b"content-type" => header::CONTENT_TYPE,
];
static LEN_13: [([u8; 13], HeaderName); 10] = spellings![
    b"Cache-Control" b"cache-control" => header::CACHE_CONTROL,
    b"Last-Modified" b"last-modified" => header::LAST_MODIFIED,
    b"Accept-Ranges" b"accept-ranges" => header::ACCEPT_RANGES,
    b"Authorization" b"authorization" => header::AUTHORIZATION,
    b"If-None-Match" b"if-none-match" => header::IF_NONE_MATCH,
];
static LEN_14: [([u8; 14], HeaderName); 2] = spellings![
    b"Content-Length" b"content-length" => header::CONTENT_LENGTH,
];
static LEN_15: [([u8; 15], HeaderName); 4] = spellings![
    b"Accept-Encoding" b"accept-encoding" => header::ACCEPT_ENCODING,
    b"Accept-Language" b"accept-language" => header::ACCEPT_LANGUAGE,
];
static LEN_16: [([u8; 16], HeaderName); 2] = spellings![
    b"Content-Encoding" b"content-encoding" => header::CONTENT_ENCODING,
];
static LEN_17: [([u8; 17], HeaderName); 4] = spellings![
    b"Transfer-Encoding" b"transfer-encoding" => header::TRANSFER_ENCODING,
    b"If-Modified-Since" b"if-modified-since" => header::IF_MODIFIED_SINCE,
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries() -> Vec<(Vec<u8>, HeaderName)> {
        fn add<const N: usize>(out: &mut Vec<(Vec<u8>, HeaderName)>, t: &[([u8; N], HeaderName)]) {
            out.extend(t.iter().map(|(k, n)| (k.to_vec(), n.clone())));
        }
        let mut out = Vec::new();
        add(&mut out, &LEN_4);
        add(&mut out, &LEN_6);
        add(&mut out, &LEN_7);
        add(&mut out, &LEN_8);
        add(&mut out, &LEN_10);
        add(&mut out, &LEN_12);
        add(&mut out, &LEN_13);
        add(&mut out, &LEN_14);
        add(&mut out, &LEN_15);
        add(&mut out, &LEN_16);
        add(&mut out, &LEN_17);
        out
    }

    /// Each spelling in the tables names the field the general parser
    /// would: the right constant, at the right length.
    #[test]
    fn every_entry_is_what_from_bytes_says() {
        let entries = entries();
        assert_eq!(entries.len(), 54);
        for (spelling, name) in &entries {
            let parsed = HeaderName::from_bytes(spelling).unwrap();
            assert_eq!(&parsed, name, "{}", String::from_utf8_lossy(spelling));
            assert_eq!(from_wire(spelling).unwrap(), parsed);
            assert!(
                spelling.eq_ignore_ascii_case(name.as_str().as_bytes()),
                "{name}"
            );
        }
    }

    /// Spellings not in the tables, and bad names, go to the general
    /// parser and come back as it says.
    #[test]
    fn other_spellings_and_bad_names_take_the_general_path() {
        for name in [
            &b"CONTENT-TYPE"[..],
            b"content-Type",
            b"Etag",
            b"X-Request-Id",
            b"x-forwarded-for",
            b"Keep-Alive",
            b"",
            b"Content Type",
            b"Date\0",
            b"Dat\xe9",
            b"Content-Length ",
        ] {
            let expected = HeaderName::from_bytes(name);
            let got = from_wire(name);
            assert_eq!(got.is_ok(), expected.is_ok(), "{name:?}");
            if let (Ok(got), Ok(expected)) = (got, expected) {
                assert_eq!(got, expected, "{name:?}");
            }
        }
    }

    proptest! {
        /// Any bytes: the same answer as `HeaderName::from_bytes`.
        #[test]
        fn same_as_from_bytes(name in proptest::collection::vec(any::<u8>(), 0..20)) {
            let expected = HeaderName::from_bytes(&name);
            let got = from_wire(&name);
            prop_assert_eq!(got.is_ok(), expected.is_ok());
            if let (Ok(got), Ok(expected)) = (got, expected) {
                prop_assert_eq!(got, expected);
            }
        }

        /// Names of the tables' lengths, mixing case: the same answer.
        #[test]
        fn same_as_from_bytes_near_the_tables(
            pick in 0usize..54,
            flips in proptest::collection::vec(any::<bool>(), 17),
        ) {
            let (spelling, _) = &entries()[pick];
            let name: Vec<u8> = spelling
                .iter()
                .zip(&flips)
                .map(|(&b, &flip)| if flip { b.to_ascii_uppercase() } else { b })
                .collect();
            prop_assert_eq!(from_wire(&name).unwrap(), HeaderName::from_bytes(&name).unwrap());
        }
    }
}
