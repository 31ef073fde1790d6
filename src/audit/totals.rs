//! Totals for billing: the sum of `amount_cents` and the count of records
//! per `user_sid` × `resource_kind` × period, as the aggregator computes them.

use crate::record::UsageRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// The period totals are summed over (`--totals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    Hour,
    Day,
    Month,
}

impl Period {
    /// The period a record falls in: `2026-11-26-16`, `2026-11-26` or `2026-11`.
    pub fn label(self, r: &UsageRecord) -> String {
        let fmt = match self {
            Period::Hour => "%Y-%m-%d-%H",
            Period::Day => "%Y-%m-%d",
            Period::Month => "%Y-%m",
        };
        r.occurred_at.0.format(fmt).to_string()
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// One row: a user, a resource kind and a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub period: String,
    pub user_sid: String,
    pub resource_kind: String,
    /// Up to 7 M records of 10^12 cents each overflow 64 bits; 128 do not.
    pub amount_cents: u128,
    pub count: u64,
}

/// The running sums.
#[derive(Debug, Clone)]
pub struct Totals {
    pub period: Period,
    sums: BTreeMap<(String, String, String), (u128, u64)>,
}

impl Totals {
    pub fn new(period: Period) -> Totals {
        Totals {
            period,
            sums: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, r: &UsageRecord) {
        let key = (
            self.period.label(r),
            r.user_sid.clone(),
            r.resource_kind.clone(),
        );
        let e = self.sums.entry(key).or_insert((0, 0));
        e.0 += u128::from(r.amount_cents);
        e.1 += 1;
    }

    pub fn merge(&mut self, other: Totals) {
        for (k, (a, n)) in other.sums {
            let e = self.sums.entry(k).or_insert((0, 0));
            e.0 += a;
            e.1 += n;
        }
    }

    /// Rows sorted by period, user, resource kind.
    pub fn rows(&self) -> Vec<Row> {
        self.sums
            .iter()
            .map(|((p, u, k), (a, n))| Row {
                period: p.clone(),
                user_sid: u.clone(),
                resource_kind: k.clone(),
                amount_cents: *a,
                count: *n,
            })
            .collect()
    }

    /// An aligned table with a header line.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let w =
            |f: &dyn Fn(&Row) -> usize, h: &str| rows.iter().map(f).max().unwrap_or(0).max(h.len());
        let wp = w(&|r| r.period.len(), self.period.name());
        let wu = w(&|r| r.user_sid.len(), "user_sid");
        let wk = w(&|r| r.resource_kind.len(), "resource_kind");
        let mut out = format!(
            "{:<wp$}  {:<wu$}  {:<wk$}  {:>14}  {:>8}\n",
            self.period.name(),
            "user_sid",
            "resource_kind",
            "amount_cents",
            "count"
        );
        for r in &rows {
            out.push_str(&format!(
                "{:<wp$}  {:<wu$}  {:<wk$}  {:>14}  {:>8}\n",
                r.period, r.user_sid, r.resource_kind, r.amount_cents, r.count
            ));
        }
        out
    }

    /// CSV with a header line. Every value is digits, `-` or the record
    /// rules' characters, so nothing needs quoting.
    pub fn csv(&self) -> String {
        let mut out = format!(
            "{},user_sid,resource_kind,amount_cents,count\n",
            self.period.name()
        );
        for r in self.rows() {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                r.period, r.user_sid, r.resource_kind, r.amount_cents, r.count
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UtcSecond;

    fn rec(sid: &str, at: &str, amount: u64) -> UsageRecord {
        UsageRecord {
            amount_cents: amount,
            description: String::new(),
            idempotency_key: "k".into(),
            node_id: "n1".into(),
            occurred_at: UtcSecond::parse(at).unwrap(),
            resource_kind: "cpu".into(),
            user_sid: sid.into(),
        }
    }

    #[test]
    fn sums_per_user_kind_and_period() {
        let mut t = Totals::new(Period::Day);
        t.add(&rec("0a1b", "2026-11-26 16:00:00", 250));
        t.add(&rec("0a1b", "2026-11-26 23:59:59", 1_000_000_000_000));
        let mut u = Totals::new(Period::Day);
        u.add(&rec("0a1b", "2026-11-27 00:00:00", 5));
        u.add(&rec("zz99", "2026-11-26 00:00:00", 7));
        t.merge(u);
        assert_eq!(
            t.csv(),
            "day,user_sid,resource_kind,amount_cents,count\n\
             2026-11-26,0a1b,cpu,1000000000250,2\n\
             2026-11-26,zz99,cpu,7,1\n\
             2026-11-27,0a1b,cpu,5,1\n"
        );
        assert!(t.table().starts_with("day         user_sid  resource_kind"));
        assert_eq!(
            Period::Month.label(&rec("0a1b", "2026-11-26 16:00:00", 1)),
            "2026-11"
        );
        assert_eq!(
            Period::Hour.label(&rec("0a1b", "2026-11-26 16:00:00", 1)),
            "2026-11-26-16"
        );
    }
}
