//! Human units in the config file: durations (`"10s"`, `"1m30s"`, `"250ms"`)
//! and sizes (`"1m"`, `"512k"`, nginx style).
//!
//! Both parse once at load time into plain values, so nothing past the
//! config layer ever sees a string.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration written as a sum of `<number><unit>` terms.
///
/// Units: `ms`, `s`, `m`, `h`, `d`, `w` (nginx's set). `"0"` means zero.
/// Fractions are allowed (`"1.5s"`), so a VRRP `advert_interval = "0.1s"`
/// reads the way keepalived's `advert_int 0.1` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"1m30s"`-style text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if text.is_empty() {
            return Err("empty duration; write e.g. \"10s\" or \"250ms\"".into());
        }
        let mut total = 0f64;
        let mut rest = text;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("{text:?} has no unit; write e.g. \"{text}s\""))?;
            if number_len == 0 {
                return Err(format!("{text:?} is not a duration; write e.g. \"10s\""));
            }
            let number: f64 = rest[..number_len]
                .parse()
                .map_err(|_| format!("{:?} is not a number", &rest[..number_len]))?;
            rest = &rest[number_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let seconds_per_unit = match &rest[..unit_len] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                "w" => 604_800.0,
                other => {
                    return Err(format!(
                        "unknown unit {other:?} in {text:?}; use ms, s, m, h, d or w"
                    ));
                }
            };
            rest = &rest[unit_len..];
            total += number * seconds_per_unit;
        }
        if !total.is_finite() || total > 10.0 * 365.0 * 86_400.0 {
            return Err(format!("{text:?} is too long"));
        }
        // Round to whole microseconds: "0.1s" must be exactly 100 ms.
        Ok(Self(Duration::from_micros((total * 1e6).round() as u64)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<ConfigDuration> for Duration {
    fn from(d: ConfigDuration) -> Self {
        d.0
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"10s\", \"250ms\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v == 0 {
                    return Ok(ConfigDuration(Duration::ZERO));
                }
                Err(E::custom(format!(
                    "a bare number is ambiguous; write \"{v}s\" or \"{v}ms\""
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A byte size: an integer, or a string with an nginx suffix
/// (`k`, `m`, `g`; powers of 1024). `"0"` often means "no limit"; the key's
/// documentation says so where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (digits, multiplier) = match text.char_indices().last() {
            Some((i, 'k' | 'K')) => (&text[..i], 1u64 << 10),
            Some((i, 'm' | 'M')) => (&text[..i], 1 << 20),
            Some((i, 'g' | 'G')) => (&text[..i], 1 << 30),
            _ => (text, 1),
        };
        let n: u64 = digits.parse().map_err(|_| {
            format!("{text:?} is not a size; write bytes or e.g. \"512k\", \"10m\", \"1g\"")
        })?;
        n.checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes or a string such as \"10m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Duration {
        ConfigDuration::parse(text).unwrap().0
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("10s"), Duration::from_secs(10));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("7d"), Duration::from_secs(7 * 86_400));
        assert_eq!(d("1w"), Duration::from_secs(604_800));
        assert_eq!(d("0.1s"), Duration::from_millis(100));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("0.01s"), Duration::from_millis(10));
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, hint) in [
            ("10", "no unit"),
            ("", "empty"),
            ("s", "not a duration"),
            ("10x", "unknown unit"),
            ("1..2s", "not a number"),
            ("99999999w", "too long"),
        ] {
            let err = ConfigDuration::parse(text).unwrap_err();
            assert!(err.contains(hint), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("0").unwrap().0, 0);
        assert_eq!(ByteSize::parse("512").unwrap().0, 512);
        assert_eq!(ByteSize::parse("1k").unwrap().0, 1024);
        assert_eq!(ByteSize::parse("10m").unwrap().0, 10 << 20);
        assert_eq!(ByteSize::parse("1G").unwrap().0, 1 << 30);
        assert!(ByteSize::parse("1t").is_err());
        assert!(ByteSize::parse("-1").is_err());
        assert!(ByteSize::parse("99999999999999g").is_err());
    }

    #[test]
    fn deserialize_from_toml() {
        #[derive(Deserialize)]
        struct T {
            a: ConfigDuration,
            b: ByteSize,
            c: ByteSize,
        }
        let t: T = toml::from_str("a = \"5s\"\nb = \"1m\"\nc = 100").unwrap();
        assert_eq!(t.a.0, Duration::from_secs(5));
        assert_eq!(t.b.0, 1 << 20);
        assert_eq!(t.c.0, 100);
        let err = toml::from_str::<T>("a = 5\nb = 1\nc = 1").err().unwrap();
        assert!(err.to_string().contains("ambiguous"), "{err}");
    }
}
