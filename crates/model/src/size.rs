//! Sizes in bytes as configuration files write them (`512MB`).

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A size in bytes: an integer with an optional unit B, KB, MB, GB, TB (powers of 1024,
/// as Prometheus's `--storage.tsdb.retention.size`); `0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `512MB`, `10GB`, `1024` (bytes; units are powers of 1024).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?} (use e.g. 512MB, 20GB)"))?;
        let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "KB" | "KIB" => 1 << 10,
            "MB" | "MIB" => 1 << 20,
            "GB" | "GIB" => 1 << 30,
            "TB" | "TIB" => 1 << 40,
            "PB" | "PIB" => 1 << 50,
            _ => {
                return Err(format!(
                    "invalid size unit in {s:?} (use B, KB, MB, GB, TB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| de::Error::custom("expected a size such as 512MB"))? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(s) => Self::parse(&s).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10 << 20)));
        assert_eq!(ByteSize::parse("1024"), Ok(ByteSize(1024)));
        assert!(ByteSize::parse("10XB").is_err());
        assert!(ByteSize::parse("99999999999PB").is_err());
    }
}
