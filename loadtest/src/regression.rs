//! Regression checks against a baseline summary (`--baseline FILE`): `--max-regression
//! 'deliver.p99=+200%'` fails the run when a figure got worse than the baseline by more than
//! the allowed change. "Worse" depends on the figure: rates, counts of work done and
//! connections held are better higher; latencies, loss, duplicates, errors, memory and CPU
//! are better lower. A baseline of 0 allows no rise at all (loss 0 stays 0).

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};

/// One parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxRegression {
    pub figure: String,
    /// Allowed worsening as a fraction of the baseline (`+200%` → 2.0).
    pub allowed: f64,
    pub text: String,
}

/// Whether more of `figure` is better.
pub fn higher_is_better(figure: &str) -> bool {
    figure.ends_with("_per_s")
        || figure.ends_with(".count")
        || matches!(
            figure,
            "sent"
                | "acked"
                | "delivered"
                | "connections.held"
                | "history_pages"
                | "history_messages"
                | "history_walks"
        )
}

impl MaxRegression {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (figure, pct) = compact
            .split_once('=')
            .with_context(|| format!("regression rule {text:?}: expected FIGURE=+N%"))?;
        let pct = pct.trim_start_matches('+');
        let pct = pct
            .strip_suffix('%')
            .with_context(|| format!("regression rule {text:?}: the change ends in %"))?;
        let allowed: f64 = pct
            .parse()
            .with_context(|| format!("regression rule {text:?}: {pct:?} is not a number"))?;
        if figure.is_empty() || !allowed.is_finite() || allowed < 0.0 {
            bail!("regression rule {text:?}: needs a figure and a change of 0% or more");
        }
        Ok(Self {
            figure: figure.to_owned(),
            allowed: allowed / 100.0,
            text: text.to_owned(),
        })
    }

    /// `None` when the figure stayed within the allowed change; otherwise why not.
    pub fn check(
        &self,
        base: &BTreeMap<String, f64>,
        now: &BTreeMap<String, f64>,
    ) -> Option<String> {
        let (Some(&b), Some(&n)) = (base.get(&self.figure), now.get(&self.figure)) else {
            return Some(format!(
                "{}: {:?} is missing from the baseline or the run",
                self.text, self.figure
            ));
        };
        let worse = if higher_is_better(&self.figure) {
            n < b * (1.0 - self.allowed).max(0.0)
        } else {
            n > b * (1.0 + self.allowed)
        };
        worse.then(|| {
            let change = if b == 0.0 {
                format!("{:+}", n - b)
            } else {
                format!("{:+.1}%", (n - b) / b.abs() * 100.0)
            };
            format!(
                "{}: {} went from {b:.3} to {n:.3} ({change})",
                self.text, self.figure
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn latency_may_rise_by_the_allowed_change_only() {
        let r = MaxRegression::parse("deliver.p99 = +200%").unwrap();
        assert_eq!(r.allowed, 2.0);
        let base = figs(&[("deliver.p99", 10.0)]);
        assert_eq!(r.check(&base, &figs(&[("deliver.p99", 30.0)])), None);
        let why = r.check(&base, &figs(&[("deliver.p99", 31.0)])).unwrap();
        assert!(why.contains("+210.0%"), "{why}");
        // Better is always fine.
        assert_eq!(r.check(&base, &figs(&[("deliver.p99", 1.0)])), None);
    }

    #[test]
    fn rates_may_fall_by_the_allowed_change_only() {
        let r = MaxRegression::parse("delivered_per_s=10%").unwrap();
        let base = figs(&[("delivered_per_s", 1000.0)]);
        assert_eq!(r.check(&base, &figs(&[("delivered_per_s", 900.0)])), None);
        assert!(r
            .check(&base, &figs(&[("delivered_per_s", 899.0)]))
            .is_some());
        assert_eq!(r.check(&base, &figs(&[("delivered_per_s", 5000.0)])), None);
    }

    #[test]
    fn zero_stays_zero_and_missing_figures_fail() {
        let r = MaxRegression::parse("loss=+1000%").unwrap();
        let base = figs(&[("loss", 0.0)]);
        assert_eq!(r.check(&base, &figs(&[("loss", 0.0)])), None);
        assert!(r.check(&base, &figs(&[("loss", 1.0)])).is_some());
        assert!(r.check(&figs(&[]), &figs(&[("loss", 0.0)])).is_some());
        assert!(MaxRegression::parse("loss<3").is_err());
        assert!(MaxRegression::parse("loss=-5%").is_err());
    }
}
