//! `Accept-Encoding` (RFC 9110 §12.5.3): the weight a client gives each
//! content coding vigil can produce. Two readers: `gzip_static` (which
//! precompressed sidecars the client takes, best first: [`parse`]) and
//! on-the-fly compression (which coding to encode with: [`weights`]).

/// A content coding vigil can send: from a precompressed sidecar file
/// (br, gzip) or encoded on the fly (all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Br,
    Gzip,
    Zstd,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }

    /// The suffix of the sidecar file (`app.js` → `app.js.br`).
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
            Coding::Zstd => ".zst",
        }
    }
}

/// The weight (thousandths, 0 = not acceptable) the client gives each
/// coding, after `*` is applied to the codings it did not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Weights {
    pub gzip: Weight,
    pub br: Weight,
    pub zstd: Weight,
    /// `identity`, only when the client listed it (or `*`): an unlisted
    /// identity is acceptable but has no weight to compare with.
    pub identity: Option<Weight>,
}

impl Weights {
    pub fn of(&self, coding: Coding) -> Weight {
        match coding {
            Coding::Br => self.br,
            Coding::Gzip => self.gzip,
            Coding::Zstd => self.zstd,
        }
    }
}

/// Reads the Accept-Encoding field value (all lines joined by `,`); no
/// header accepts no coding (see [`parse`] for why). The same rules as
/// [`parse`]: a coding's own weight, else `*`'s, else 0; the first weight
/// of a coding listed twice; malformed members skipped.
pub(crate) fn weights(value: Option<&str>) -> Weights {
    let Some(value) = value else {
        return Weights::default();
    };
    let (mut br, mut gzip, mut zstd, mut identity, mut any) = (None, None, None, None, None);
    for member in value.split(',') {
        let mut parts = member.split(';');
        let coding = parts.next().unwrap_or("").trim_matches(is_ows);
        if coding.is_empty() {
            continue;
        }
        let Some(weight) = weight(parts) else {
            continue;
        };
        let slot = if coding.eq_ignore_ascii_case("br") {
            &mut br
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding.eq_ignore_ascii_case("zstd") {
            &mut zstd
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        // A coding listed twice keeps its first weight.
        slot.get_or_insert(weight);
    }
    Weights {
        gzip: gzip.or(any).unwrap_or(0),
        br: br.or(any).unwrap_or(0),
        zstd: zstd.or(any).unwrap_or(0),
        identity: identity.or(any),
    }
}

/// The sidecar codings a client accepts, most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Preference {
    order: [Option<Coding>; 2],
}

impl Preference {
    /// Nothing but the file itself.
    pub const IDENTITY: Preference = Preference {
        order: [None, None],
    };

    pub fn iter(&self) -> impl Iterator<Item = Coding> + '_ {
        self.order.iter().flatten().copied()
    }
}

/// Weights are kept in thousandths, the precision a qvalue can have (§12.4.2).
pub(crate) type Weight = u16;

/// Reads the Accept-Encoding field value (all lines joined by `,`).
///
/// - No header: only identity. §12.5.3 says any coding is then acceptable,
///   but nginx's gzip_static (and every browser-facing server) sends
///   compressed bytes only to clients that asked; `curl` without
///   `--compressed` must get the file as it is.
/// - `br` / `gzip` (or its alias `x-gzip`, §8.4.1.3) take their own weight;
///   a coding not listed takes the weight of `*`, else 0 (§12.5.3).
/// - `q=0` means "not acceptable".
/// - Higher weight first; on a tie br comes first (smaller files).
/// - Malformed members are skipped, not fatal: one bad token must not
///   cost the client compression for the good ones.
pub(crate) fn parse(value: Option<&str>) -> Preference {
    if value.is_none() {
        return Preference::IDENTITY;
    }
    let Weights { br, gzip, .. } = weights(value);
    let order = match (br > 0, gzip > 0) {
        (false, false) => [None, None],
        (true, false) => [Some(Coding::Br), None],
        (false, true) => [Some(Coding::Gzip), None],
        (true, true) if gzip > br => [Some(Coding::Gzip), Some(Coding::Br)],
        (true, true) => [Some(Coding::Br), Some(Coding::Gzip)],
    };
    Preference { order }
}

/// The weight among a member's parameters: 1000 when there is no `q`,
/// `None` when `q` is not a valid qvalue (§12.4.2:
/// `( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`).
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<Weight> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim_matches(is_ows).eq_ignore_ascii_case("q") {
            continue;
        }
        return qvalue(value.trim_matches(is_ows));
    }
    Some(1000)
}

fn qvalue(v: &str) -> Option<Weight> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: Weight = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += Weight::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use Coding::{Br, Gzip};

    fn order(value: &str) -> Vec<Coding> {
        parse(Some(value)).iter().collect()
    }

    #[test]
    fn browsers() {
        assert_eq!(order("gzip, deflate, br"), [Br, Gzip]);
        assert_eq!(order("gzip, deflate, br, zstd"), [Br, Gzip]);
        assert_eq!(order("gzip, deflate"), [Gzip]);
        assert_eq!(order("br"), [Br]);
        assert_eq!(order("identity"), []);
        assert_eq!(order(""), []);
        assert_eq!(parse(None), Preference::IDENTITY);
    }

    #[test]
    fn weights() {
        assert_eq!(order("gzip;q=0, br"), [Br]);
        assert_eq!(order("gzip;q=0.000, br;q=0"), []);
        assert_eq!(order("br;q=0.1, gzip;q=0.9"), [Gzip, Br]);
        assert_eq!(order("br;q=0.5, gzip;q=0.5"), [Br, Gzip]);
        assert_eq!(order("gzip; q=1.000 , br ;Q=0.001"), [Gzip, Br]);
        assert_eq!(order("x-gzip"), [Gzip]);
        assert_eq!(order("GZIP, BR"), [Br, Gzip]);
    }

    #[test]
    fn star_covers_unlisted_codings_only() {
        assert_eq!(order("*"), [Br, Gzip]);
        assert_eq!(order("*;q=0"), []);
        assert_eq!(order("gzip, *;q=0"), [Gzip]);
        assert_eq!(order("br;q=0, *"), [Gzip]);
        assert_eq!(order("*;q=0.2, gzip;q=0.5"), [Gzip, Br]);
    }

    #[test]
    fn malformed_members_are_skipped() {
        assert_eq!(order("gzip;q=2, br"), [Br]);
        assert_eq!(order("gzip;q=0.5555, br"), [Br]);
        assert_eq!(order("gzip;q=, br"), [Br]);
        assert_eq!(order("gzip;q=1.5"), []);
        assert_eq!(order("gzip;q=-1"), []);
        assert_eq!(order(",,gzip;;level=9,"), [Gzip]);
        assert_eq!(order("br;q=0, br;q=1"), []);
    }

    #[test]
    fn weights_of_every_coding() {
        let w = super::weights(Some("gzip, br;q=0.5, zstd;q=0.25, identity;q=0.1"));
        assert_eq!(
            (w.gzip, w.br, w.zstd, w.identity),
            (1000, 500, 250, Some(100))
        );
        let w = super::weights(Some("*;q=0.3, zstd"));
        assert_eq!(
            (w.gzip, w.br, w.zstd, w.identity),
            (300, 300, 1000, Some(300))
        );
        let w = super::weights(Some("ZSTD, x-gzip;q=0"));
        assert_eq!((w.gzip, w.br, w.zstd, w.identity), (0, 0, 1000, None));
        assert_eq!(super::weights(None), Weights::default());
        assert_eq!(w.of(Coding::Zstd), 1000);
    }

    #[test]
    fn qvalues() {
        for (v, w) in [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.25", 250),
            ("0.125", 125),
            ("1", 1000),
            ("1.0", 1000),
            ("1.000", 1000),
        ] {
            assert_eq!(qvalue(v), Some(w), "{v}");
        }
        for v in ["", "2", "1.1", "0.1234", ".5", "01", "0.x", "1.0001", " 1"] {
            assert_eq!(qvalue(v), None, "{v:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_never_returns_a_q0_coding(value in "[a-z*;=,. 0-9qQ-]{0,40}") {
            let p = parse(Some(&value));
            let list: Vec<_> = p.iter().collect();
            prop_assert!(list.len() <= 2);
            if list.len() == 2 { prop_assert_ne!(list[0], list[1]); }
        }

        #[test]
        fn explicit_q0_is_never_chosen(q in 1u16..=1000, star in proptest::bool::ANY) {
            let value = format!("{}br;q={}.{:03}, gzip;q=0", if star { "*, " } else { "" }, q / 1000, q % 1000);
            prop_assert_eq!(parse(Some(&value)).iter().collect::<Vec<_>>(), vec![Br]);
        }
    }
}
