//! What `deploy/` promises operators: every metric a Grafana dashboard or a Prometheus rule
//! names is one the services export. The names come from the shipped files themselves; the
//! end-to-end cluster test scrapes every process after real traffic and checks them
//! against these (`cluster.rs`).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_json::Value;

fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability")
}

/// Every PromQL expression in the dashboards (each panel's targets).
fn dashboard_expressions() -> Vec<String> {
    let dir = observability().join("grafana/dashboards");
    let mut expressions = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                expressions.push(target["expr"].as_str().unwrap().to_owned());
            }
        }
    }
    expressions
}

/// The rules file's `expr:` values (inline or `|` blocks) and `record:` names. Read as text:
/// the file is ours, and its shape is plain.
fn rules() -> (Vec<String>, BTreeSet<String>) {
    let text =
        std::fs::read_to_string(observability().join("prometheus/tonearm.rules.yml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut expressions = Vec::new();
    let mut recorded = BTreeSet::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("record:") {
            recorded.insert(name.trim().to_owned());
        }
        let Some(value) = trimmed.strip_prefix("expr:") else { continue };
        let value = value.trim();
        if value != "|" {
            expressions.push(value.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[index + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .copied()
            .collect();
        expressions.push(block.join("\n"));
    }
    (expressions, recorded)
}

/// The metric names a PromQL expression reads: what is left once strings, label matchers,
/// ranges, grouping clauses, functions, keywords and numbers are taken out.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth = 0_usize;
    let mut quoted = false;
    for c in expression.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ => text.push(c),
        }
    }
    const KEYWORDS: [&str; 9] =
        ["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"];
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let mut names = BTreeSet::new();
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
        } else {
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            if c == '(' || c == ')' {
                tokens.push(c.to_string());
            }
        }
    }
    // Skip what a grouping clause lists: `by (job, le)`.
    let mut skipping = false;
    for (index, token) in tokens.iter().enumerate() {
        if skipping {
            if token == ")" {
                skipping = false;
            }
            continue;
        }
        if GROUPING.contains(&token.as_str()) {
            skipping = tokens.get(index + 1).is_some_and(|next| next == "(");
            continue;
        }
        // A function's call, or an aggregation's: `sum (…)`, `sum by (job) (…)`.
        let called = tokens
            .get(index + 1)
            .is_some_and(|next| next == "(" || GROUPING[..2].contains(&next.as_str()));
        let numeric = token.starts_with(|c: char| c.is_ascii_digit());
        if token == "(" || token == ")" || called || numeric || KEYWORDS.contains(&token.as_str()) {
            continue;
        }
        names.insert(token.clone());
    }
    names
}

/// What the dashboards and rules read, less what the rules record themselves.
pub fn metrics_operators_are_shown() -> BTreeSet<String> {
    let (rule_expressions, recorded) = rules();
    dashboard_expressions()
        .iter()
        .chain(&rule_expressions)
        .flat_map(|expression| metric_names(expression))
        .filter(|name| !recorded.contains(name))
        .collect()
}

/// The sample names a Prometheus exposition lists (histograms as `_bucket`, `_sum`, `_count`).
pub fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn expressions_are_read_down_to_their_metrics() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval]))) / clamp_min(sum(rate(transcodes_total[15m])), 1e-9) > (14.4 * 0.001) and tonearm:http_error_ratio:rate1h > 0"#,
    );
    let expected: BTreeSet<String> = [
        "http_request_duration_seconds_bucket",
        "tonearm:http_error_ratio:rate1h",
        "transcodes_total",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(names, expected);
}

#[test]
fn the_dashboards_and_rules_are_read_whole() {
    let (rule_expressions, recorded) = rules();
    assert!(rule_expressions.len() >= 12, "{rule_expressions:?}");
    assert!(recorded.contains("tonearm:http_error_ratio:rate5m"), "{recorded:?}");
    assert!(dashboard_expressions().len() >= 25);
    let shown = metrics_operators_are_shown();
    for name in ["http_requests_total", "events_consumer_lag", "transcode_queue_depth"] {
        assert!(shown.contains(name), "{name} in {shown:?}");
    }
    // Every recording rule a dashboard reads is defined.
    for name in dashboard_expressions().iter().flat_map(|e| metric_names(e)) {
        if name.contains(':') {
            assert!(recorded.contains(&name), "{name} is read but never recorded");
        }
    }
}

/// `tonearm health`, the image's HEALTHCHECK: 0 while the server answers `/healthz`, not 0
/// once it is gone.
#[tokio::test]
async fn the_health_command_follows_the_server() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = crate::support::UpProcess::start(dir.path()).await;
    let port = server.url.rsplit(':').next().unwrap().trim_end_matches('/').to_owned();
    let health = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tonearm"))
            .args(["health", "--port", &port])
            .env("TONEARM_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let answered = health();
    assert!(answered.status.success(), "{}", String::from_utf8_lossy(&answered.stderr));
    server.kill();
    let gone = health();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("nothing answers"), "{gone:?}");
}
