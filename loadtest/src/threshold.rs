//! SLO checks on summary figures: `deliver.p99<50ms`, `loss==0`, `errors<=3`,
//! `delivered_per_s>=1000`. Durations are compared in milliseconds (`us`, `ms`, `s`
//! suffixes convert); a figure the run did not produce is a breach, not a pass.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};

/// One parsed check.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub figure: String,
    pub op: &'static str,
    pub value: f64,
    pub text: String,
}

const OPS: [&str; 6] = ["<=", ">=", "==", "!=", "<", ">"];

impl Threshold {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (at, op) = OPS
            .iter()
            .filter_map(|op| compact.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .with_context(|| format!("threshold {text:?} has no comparison (<, <=, ==, …)"))?;
        let figure = compact[..at].to_owned();
        let rhs = &compact[at + op.len()..];
        let (num, scale) = if let Some(n) = rhs.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = rhs.strip_suffix("us") {
            (n, 1e-3)
        } else if let Some(n) = rhs.strip_suffix('s') {
            (n, 1e3)
        } else {
            (rhs, 1.0)
        };
        let value: f64 = num
            .parse()
            .with_context(|| format!("threshold {text:?}: {rhs:?} is not a number"))?;
        if figure.is_empty() {
            bail!("threshold {text:?} names no figure");
        }
        Ok(Self {
            figure,
            op,
            value: value * scale,
            text: text.to_owned(),
        })
    }

    /// `None` when it holds; otherwise why not.
    pub fn check(&self, figures: &BTreeMap<String, f64>) -> Option<String> {
        let Some(&actual) = figures.get(&self.figure) else {
            return Some(format!(
                "{}: the run has no figure {:?}",
                self.text, self.figure
            ));
        };
        let ok = match self.op {
            "<" => actual < self.value,
            "<=" => actual <= self.value,
            ">" => actual > self.value,
            ">=" => actual >= self.value,
            "==" => actual == self.value,
            _ => actual != self.value,
        };
        (!ok).then(|| format!("{}: actual {actual}", self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let t = Threshold::parse("deliver.p99 < 50ms").unwrap();
        assert_eq!(
            (t.figure.as_str(), t.op, t.value),
            ("deliver.p99", "<", 50.0)
        );
        assert_eq!(Threshold::parse("ack.p50<=2s").unwrap().value, 2000.0);
        let loss = Threshold::parse("loss==0").unwrap();
        assert_eq!(loss.op, "==");
        let mut f = BTreeMap::new();
        f.insert("deliver.p99".to_owned(), 12.0);
        f.insert("loss".to_owned(), 1.0);
        assert!(t.check(&f).is_none());
        assert!(loss.check(&f).is_some());
        assert!(Threshold::parse("errors").is_err());
        assert!(Threshold::parse("x<y").is_err());
        assert!(Threshold::parse("nope<1").unwrap().check(&f).is_some());
    }
}
