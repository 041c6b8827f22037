//! Parsing of the Prometheus text format, and the counters that the benchmark reads from the
//! operator's and kube-apiserver's `/metrics`.

use std::collections::BTreeMap;

/// One sample line: metric name, labels and value.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// Returns the value of a label, or "" when the sample does not have it.
    pub fn label(&self, name: &str) -> &str {
        let found = self.labels.iter().find(|(key, _)| key == name);
        found.map_or("", |(_, value)| value.as_str())
    }
}

/// Parses every sample line of a Prometheus or OpenMetrics text exposition. Comment lines and
/// lines that do not parse are skipped.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    // The value may be followed by a timestamp or an exemplar, which are ignored.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `key="value",...}` and returns the labels and the text after the closing brace.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let equals = text.find('=')?;
        let key = text[..equals].trim().to_owned();
        let quoted = text[equals + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '"' => break index,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key, value));
        text = &quoted[end + 1..];
    }
}

/// Counters of the operator, read from its `/metrics`. They start at zero with each process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperatorCounters {
    /// `reconciles_total`, all results.
    pub reconciles: u64,
    /// `uploads_total{result="Uploaded"}`.
    pub uploads: u64,
    /// `uploads_total`, all results.
    pub upload_attempts: u64,
    /// `directory_requests_total`, all statuses.
    pub directory_requests: u64,
    /// `source_bytes_total{source="config_map"}`.
    pub config_map_bytes: u64,
}

impl OperatorCounters {
    /// Sums the operator's counters from a scrape of its `/metrics`.
    pub fn from_text(text: &str) -> Self {
        let mut counters = Self::default();
        for sample in parse_samples(text) {
            let value = sample.value as u64;
            match sample.name.as_str() {
                "y360_avatar_operator_reconciles_total" => counters.reconciles += value,
                "y360_avatar_operator_uploads_total" => {
                    counters.upload_attempts += value;
                    if sample.label("result") == "Uploaded" {
                        counters.uploads += value;
                    }
                }
                "y360_avatar_operator_directory_requests_total" => {
                    counters.directory_requests += value
                }
                "y360_avatar_operator_source_bytes_total"
                    if sample.label("source") == "config_map" =>
                {
                    counters.config_map_bytes += value
                }
                _ => {}
            }
        }
        counters
    }

    /// Returns the growth of every counter since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            reconciles: self.reconciles.saturating_sub(earlier.reconciles),
            uploads: self.uploads.saturating_sub(earlier.uploads),
            upload_attempts: self.upload_attempts.saturating_sub(earlier.upload_attempts),
            directory_requests: self
                .directory_requests
                .saturating_sub(earlier.directory_requests),
            config_map_bytes: self
                .config_map_bytes
                .saturating_sub(earlier.config_map_bytes),
        }
    }
}

/// Resource of a kube-apiserver request, as in the labels of `apiserver_request_total`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
}

impl RequestKey {
    /// Returns `resource[.group][/subresource]`, as kubectl names resources.
    pub fn resource_name(&self) -> String {
        let mut name = self.resource.clone();
        if !self.group.is_empty() {
            name = format!("{name}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            name = format!("{name}/{}", self.subresource);
        }
        name
    }
}

/// Requests that kube-apiserver served, from `apiserver_request_total`, summed over response
/// codes, scopes and versions. Requests to non-resource paths such as `/metrics` are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiRequests {
    pub counts: BTreeMap<RequestKey, u64>,
}

impl ApiRequests {
    /// Sums `apiserver_request_total` from a scrape of kube-apiserver's `/metrics`.
    pub fn from_text(text: &str) -> Self {
        let mut counts = BTreeMap::new();
        let samples = parse_samples(text);
        let requests = samples
            .iter()
            .filter(|sample| sample.name == "apiserver_request_total");
        for sample in requests.filter(|sample| !sample.label("resource").is_empty()) {
            let key = RequestKey {
                verb: sample.label("verb").to_owned(),
                group: sample.label("group").to_owned(),
                resource: sample.label("resource").to_owned(),
                subresource: sample.label("subresource").to_owned(),
            };
            *counts.entry(key).or_insert(0) += sample.value as u64;
        }
        Self { counts }
    }

    /// Returns the requests served since `earlier`, leaving out keys that did not grow.
    pub fn since(&self, earlier: &Self) -> Self {
        let counts = self.counts.iter().filter_map(|(key, count)| {
            let before = earlier.counts.get(key).copied().unwrap_or(0);
            let grown = count.saturating_sub(before);
            (grown > 0).then(|| (key.clone(), grown))
        });
        Self {
            counts: counts.collect(),
        }
    }

    /// Removes requests that the benchmark itself sent, so that the rest are the operator's.
    pub fn subtract(&mut self, verb: &str, resource: &str, count: u64) {
        let keys = self
            .counts
            .iter_mut()
            .filter(|(key, _)| key.verb == verb && key.resource == resource);
        let mut remaining = count;
        for (_, value) in keys {
            let taken = remaining.min(*value);
            *value -= taken;
            remaining -= taken;
        }
        self.counts.retain(|_, value| *value > 0);
    }

    /// Sums the requests with any of `verbs` on `resource` and `subresource` ("" for the
    /// object itself), in any API group.
    pub fn count(&self, verbs: &[&str], resource: &str, subresource: &str) -> u64 {
        let matching = self.counts.iter().filter(|(key, _)| {
            verbs.contains(&key.verb.as_str())
                && key.resource == resource
                && key.subresource == subresource
        });
        matching.map(|(_, count)| count).sum()
    }

    /// Returns the sum over every key.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Verbs that write an object in kube-apiserver's metrics. Server-side apply is counted as
/// `APPLY`, other patches as `PATCH` and updates as `PUT`.
pub const WRITE_VERBS: &[&str] = &["APPLY", "PATCH", "PUT"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let line = r#"x_total{a="1",b="q\"uo\\te"} 42"#;
        let sample = parse_line(line).unwrap();
        assert_eq!(sample.name, "x_total");
        assert_eq!(sample.label("a"), "1");
        assert_eq!(sample.label("b"), r#"q"uo\te"#);
        assert_eq!(sample.value, 42.0);
    }

    #[test]
    fn parses_sample_without_labels() {
        let sample = parse_line("up 1 1700000000").unwrap();
        assert_eq!(sample.name, "up");
        assert!(sample.labels.is_empty());
        assert_eq!(sample.value, 1.0);
    }

    #[test]
    fn skips_comments_and_blank_lines() {
        assert!(parse_samples("# HELP x y\n\n# EOF\n").is_empty());
    }

    #[test]
    fn sums_operator_counters() {
        let text = "\
y360_avatar_operator_reconciles_total{result=\"UpToDate\"} 3
y360_avatar_operator_reconciles_total{result=\"Uploaded\"} 2
y360_avatar_operator_uploads_total{result=\"Uploaded\"} 2
y360_avatar_operator_uploads_total{result=\"RateLimited\"} 1
y360_avatar_operator_source_bytes_total{source=\"config_map\"} 100
y360_avatar_operator_source_bytes_total{source=\"url\"} 7
";
        let counters = OperatorCounters::from_text(text);
        assert_eq!(counters.reconciles, 5);
        assert_eq!(counters.uploads, 2);
        assert_eq!(counters.upload_attempts, 3);
        assert_eq!(counters.config_map_bytes, 100);
    }

    #[test]
    fn api_requests_delta_and_subtract() {
        let before = ApiRequests::from_text(
            "apiserver_request_total{code=\"200\",group=\"\",resource=\"configmaps\",subresource=\"\",verb=\"GET\"} 5\n",
        );
        let after = ApiRequests::from_text(
            "apiserver_request_total{code=\"200\",group=\"\",resource=\"configmaps\",subresource=\"\",verb=\"GET\"} 9\n\
             apiserver_request_total{code=\"404\",group=\"\",resource=\"configmaps\",subresource=\"\",verb=\"GET\"} 1\n\
             apiserver_request_total{code=\"200\",group=\"\",resource=\"\",subresource=\"\",verb=\"GET\"} 1\n",
        );
        let mut delta = after.since(&before);
        assert_eq!(delta.count(&["GET"], "configmaps", ""), 5);
        assert_eq!(delta.total(), 5);
        delta.subtract("GET", "configmaps", 2);
        assert_eq!(delta.count(&["GET"], "configmaps", ""), 3);
    }
}
