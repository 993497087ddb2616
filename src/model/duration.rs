//! Human durations as written in playbooks: `30s`, `5m`, `1h30m`, `250ms`, `0s`.
//!
//! A [`Duration`] wraps [`std::time::Duration`] and (de)serializes as that string; its JSON
//! Schema is a string with a pattern, so editors flag `5 minutes` while people type.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// The regular expression (JSON Schema dialect) every duration string matches.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// A duration written as `1h30m`, `250ms`, `30s`, `5m`, `2d` (units `d`, `h`, `m`, `s`, `ms`;
/// components in any order are summed; `0s` is zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// A number is not followed by a unit (`30`).
    #[error("missing unit after `{number}` in `{input}` (use ms, s, m, h or d, e.g. `30s`)")]
    MissingUnit {
        /// The whole input.
        input: String,
        /// The number without a unit.
        number: String,
    },
    /// A unit is not one of `ms`, `s`, `m`, `h`, `d`.
    #[error("unknown unit `{unit}` in `{input}` (use ms, s, m, h or d)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// A unit without a number before it, or another unexpected character.
    #[error("`{input}` is not a duration")]
    Malformed {
        /// The whole input.
        input: String,
    },
    /// The value does not fit.
    #[error("duration `{input}` is too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

impl DurationError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        "bad-duration"
    }
}

// === impl Duration ===

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// From milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    /// The wrapped standard duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Parses `1h30m`-style text.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(DurationError::Empty);
        }
        let bytes = text.as_bytes();
        let mut total_ms: u128 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(DurationError::Malformed {
                    input: input.to_string(),
                });
            }
            let number = &text[start..i];
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &text[unit_start..i];
            if unit.is_empty() {
                if i < bytes.len() {
                    return Err(DurationError::Malformed {
                        input: input.to_string(),
                    });
                }
                return Err(DurationError::MissingUnit {
                    input: input.to_string(),
                    number: number.to_string(),
                });
            }
            let factor: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                other => {
                    return Err(DurationError::UnknownUnit {
                        input: input.to_string(),
                        unit: other.to_string(),
                    });
                }
            };
            let value: u128 = number.parse().map_err(|_| DurationError::Overflow {
                input: input.to_string(),
            })?;
            total_ms = value
                .checked_mul(factor)
                .and_then(|ms| ms.checked_add(total_ms))
                .filter(|ms| *ms <= u128::from(u64::MAX))
                .ok_or_else(|| DurationError::Overflow {
                    input: input.to_string(),
                })?;
        }
        let millis = u64::try_from(total_ms).map_err(|_| DurationError::Overflow {
            input: input.to_string(),
        })?;
        Ok(Duration::from_millis(millis))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        Duration(value)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(value: Duration) -> Self {
        value.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    /// Canonical form: `1h30m`, `250ms`, `1m0s500ms` is written `1m500ms`; zero is `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            let n = ms / factor;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m`, `1h30m` or `250ms`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: digits followed by a unit (ms, s, m, h, d), components \
                            may be combined: `30s`, `5m`, `1h30m`, `250ms`.",
            "examples": ["30s", "5m", "1h30m", "250ms"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(Duration::parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(Duration::parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(Duration::parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(Duration::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(Duration::parse("0s"), Ok(Duration::ZERO));
        assert_eq!(Duration::parse("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!(Duration::parse(""), Err(DurationError::Empty));
        assert!(matches!(
            Duration::parse("30"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            Duration::parse("5 minutes"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            Duration::parse("3w"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            Duration::parse("s"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            Duration::parse("-1s"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            Duration::parse("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "250ms", "30s", "5m", "1h30m", "1m500ms", "26h"] {
            let parsed = Duration::parse(text).ok();
            assert_eq!(parsed.map(|d| d.to_string()).as_deref(), Some(text));
        }
    }
}
