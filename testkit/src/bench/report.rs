//! Markdown tables and target checks that the benchmark prints.

use std::fmt::Write as _;
use std::time::Duration;

/// A markdown table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Creates an empty table with these column headers.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are left empty.
    pub fn row(&mut self, cells: &[String]) {
        self.rows.push(cells.to_vec());
    }

    /// Appends a two-cell row to a metric/value table.
    pub fn metric(&mut self, name: &str, value: impl Into<String>) {
        self.rows.push(vec![name.to_owned(), value.into()]);
    }

    /// Renders the table with a bold title line above it.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "**{}**\n", self.title);
        let _ = writeln!(out, "| {} |", self.columns.join(" | "));
        let rule = vec!["---"; self.columns.len()];
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &self.rows {
            let mut cells = row.clone();
            cells.resize(self.columns.len(), String::new());
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// A target with the value measured against it.
#[derive(Clone, Debug)]
pub struct Check {
    pub target: String,
    pub measured: String,
    /// Measured value divided by the target's limit, where that ratio means something.
    pub ratio: Option<f64>,
    pub passed: bool,
    /// True for a correctness property that must hold on any machine; false for a target that
    /// depends on timing or memory.
    pub invariant: bool,
}

/// The result of one benchmark run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub title: String,
    /// Lines printed under the title, such as the run time.
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
    pub checks: Vec<Check>,
    /// Error that ended the run early; the tables and checks before it are kept.
    pub error: Option<String>,
}

impl Report {
    /// Renders every table, then the checks, then the error if there was one.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        for note in &self.notes {
            let _ = writeln!(out, "{note}\n");
        }
        for table in &self.tables {
            out.push_str(&table.to_markdown());
            out.push('\n');
        }
        let mut checks = Table::new(
            format!("Targets ({})", self.title),
            &["target", "kind", "measured", "ratio", "result"],
        );
        for check in &self.checks {
            let kind = if check.invariant {
                "invariant"
            } else {
                "performance"
            };
            let ratio = check
                .ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
            let result = if check.passed { "PASS" } else { "FAIL" };
            checks.row(&[
                check.target.clone(),
                kind.to_owned(),
                check.measured.clone(),
                ratio,
                result.to_owned(),
            ]);
        }
        out.push_str(&checks.to_markdown());
        if let Some(error) = &self.error {
            let _ = writeln!(out, "\nThe run stopped early: {error}");
        }
        out
    }

    /// Returns the invariant checks that failed.
    pub fn failed_invariants(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|check| check.invariant && !check.passed)
            .collect()
    }
}

/// Formats seconds with two decimals.
pub fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// Formats KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Formats `count` and `count / per` with two decimals.
pub fn per(count: u64, per: usize) -> String {
    let ratio = if per == 0 {
        0.0
    } else {
        count as f64 / per as f64
    };
    format!("{count} ({ratio:.2} per object)")
}

/// Returns the nearest-rank percentile `p` (0 to 100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let values: Vec<Duration> = (1..=10).map(Duration::from_secs).collect();
        assert_eq!(percentile(&values, 50), Duration::from_secs(5));
        assert_eq!(percentile(&values, 95), Duration::from_secs(10));
        assert_eq!(percentile(&values, 100), Duration::from_secs(10));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn table_pads_short_rows() {
        let mut table = Table::new("t", &["a", "b"]);
        table.row(&["1".to_owned()]);
        assert!(table.to_markdown().ends_with("| 1 |  |\n"));
    }
}
