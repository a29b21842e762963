//! The files in `deploy/` and the Debian package metadata, checked against
//! the tools that will read them and against the real daemon:
//!
//! - the systemd unit passes `systemd-analyze verify`, and agrees with the
//!   package (binary and config paths), the sysusers file (user) and the
//!   reference config (stop timeout longer than the drain);
//! - the alert rules pass `promtool check rules` and their unit tests
//!   (`promtool test rules`), the scrape config `promtool check config`;
//! - every query of the Grafana dashboard parses as PromQL and filters on the
//!   dashboard's variables, and the dashboard is importable (datasource
//!   variable, unique panel ids, a grid without overlaps);
//! - every metric the rules and the dashboard name (`turnd_*`, `process_*`),
//!   and every label value they match exactly, is served on `/metrics` by a
//!   freshly started turnd (label values are pre-created at 0, so a typo in
//!   a rule cannot hide behind a series that has not appeared yet).
//!
//! Missing `systemd-analyze` or `promtool` skips those checks, or fails them
//! when `CI` is set (`.ci/run` installs both).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{require_tool, run_with_timeout, TestConfig};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// Limit for one run of `systemd-analyze` or `promtool`.
const TOOL_LIMIT: Duration = Duration::from_secs(60);

const UNIT: &str = "deploy/turnd.service";
const SYSUSERS: &str = "deploy/sysusers.d/turnd.conf";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";
const SCRAPE_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/turnd.json";
const REFERENCE_CONFIG: &str = "config/turnd.toml";

/// Labels that Prometheus attaches at scrape time, not turnd.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// Runs a tool and fails with its output unless it exits 0.
fn run_ok(cmd: &mut Command) -> String {
    let run = run_with_timeout(cmd, TOOL_LIMIT);
    assert!(
        run.status.success(),
        "{cmd:?} failed ({}):\n{}",
        run.status,
        run.output
    );
    run.output
}

// ---------------------------------------------------------------- systemd

/// `[Section] Key=value` lines of a unit file, in order (keys repeat).
fn unit_directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((section.clone(), key.trim().into(), value.trim().into()));
        }
    }
    out
}

/// The value of `[Service] key`; fails if the unit does not set it once.
fn service(directives: &[(String, String, String)], key: &str) -> String {
    let values: Vec<&str> = directives
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect();
    assert_eq!(values.len(), 1, "{UNIT}: [Service] {key}= set {values:?}");
    values[0].to_string()
}

/// A systemd time span made of seconds and minutes ("45s", "1min 30s", "90").
fn timespan_s(span: &str) -> u64 {
    span.split_whitespace()
        .map(|part| {
            let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let n: u64 = digits
                .parse()
                .unwrap_or_else(|_| panic!("time span {span:?}"));
            match &part[digits.len()..] {
                "" | "s" | "sec" => n,
                "m" | "min" => n * 60,
                unit => panic!("time span {span:?}: unit {unit:?} not handled here"),
            }
        })
        .sum()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !require_tool("systemd-analyze") {
        return;
    }
    // `verify` checks that every Exec binary exists: point a copy of the
    // unit at the binary under test (via a symlink, so the path has no
    // spaces whatever the checkout's path).
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let binary = dir.path().join("turnd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_turnd"), &binary).expect("symlink turnd");
    let unit_text = read(UNIT);
    assert!(unit_text.contains("/usr/bin/turnd"));
    let unit = dir.path().join("turnd.service");
    fs::write(
        &unit,
        unit_text.replace("/usr/bin/turnd", binary.to_str().expect("UTF-8 path")),
    )
    .expect("write the unit copy");

    // `verify` also runs `man` for each Documentation=man: page: give it
    // the pages the package installs, generated by the binary under test.
    let man = dir.path().join("man");
    let pages = man.join("man1");
    fs::create_dir_all(&pages).expect("create the man directory");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_turnd"))
            .args(["man", "--dir"])
            .arg(&pages),
    );
    let output = run_ok(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .env("MANPATH", &man),
    );
    // Unknown keys and bad values are only warnings (exit 0): fail on them too.
    let about_unit: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("turnd.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify warns about {UNIT}:\n{}",
        about_unit.join("\n")
    );
}

#[test]
fn unit_agrees_with_the_package_the_user_and_the_drain_timeout() {
    let directives = unit_directives(&read(UNIT));
    assert_eq!(service(&directives, "Type"), "notify");
    assert!(
        !service(&directives, "WatchdogSec").is_empty(),
        "WatchdogSec"
    );

    // The binary and the config are where the package puts them.
    let deb = package_metadata_deb();
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .expect("conf-files")
        .iter()
        .map(|v| v.as_str().expect("conf-files entry"))
        .collect();
    let assets = deb_assets(&deb);
    let installs = |target: &str| {
        assets
            .iter()
            .any(|(_, dest)| format!("/{dest}").trim_end_matches('/') == target)
            || assets.iter().any(|(src, dest)| {
                dest.ends_with('/') && format!("/{dest}{}", file_name(src)) == target
            })
    };
    for key in ["ExecStartPre", "ExecStart"] {
        let command = service(&directives, key);
        let mut words = command.split_whitespace();
        let program = words.next().expect("a command");
        assert!(
            installs(program),
            "{key}={command}: the package installs no {program}"
        );
        let args: Vec<&str> = words.collect();
        let config = args
            .windows(2)
            .find(|w| w[0] == "--config" || w[0] == "-c")
            .map(|w| w[1])
            .unwrap_or_else(|| panic!("{key}={command} names no --config"));
        assert!(
            conf_files.contains(&config) && installs(config),
            "{key}={command}: {config} is not a conffile of the package"
        );
    }

    // The unit runs as the user the sysusers file creates.
    let sysusers = read(SYSUSERS);
    let user_line = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a `u` line in the sysusers file");
    let user = user_line.split_whitespace().nth(1).expect("a user name");
    assert_eq!(service(&directives, "User"), user);
    assert_eq!(service(&directives, "Group"), user);

    // systemd must not kill turnd before the drain it starts on SIGTERM is over.
    let config: toml::Value = read(REFERENCE_CONFIG)
        .parse()
        .expect("the reference config parses");
    let drain_s = config["drain"]["timeout_s"]
        .as_integer()
        .expect("[drain] timeout_s") as u64;
    let stop_s = timespan_s(&service(&directives, "TimeoutStopSec"));
    assert!(
        stop_s > drain_s,
        "TimeoutStopSec ({stop_s} s) must exceed [drain] timeout_s ({drain_s} s)"
    );
    assert_eq!(service(&directives, "KillMode"), "mixed");
}

// ----------------------------------------------------------- Debian package

fn package_metadata_deb() -> toml::Value {
    let manifest: toml::Value = read("Cargo.toml").parse().expect("Cargo.toml parses");
    manifest["package"]["metadata"]["deb"].clone()
}

/// `(source, destination)` of every `assets` entry.
fn deb_assets(deb: &toml::Value) -> Vec<(String, String)> {
    deb["assets"]
        .as_array()
        .expect("[package.metadata.deb] assets")
        .iter()
        .map(|a| {
            let a = a
                .as_array()
                .expect("an asset is [source, destination, mode]");
            (
                a[0].as_str().expect("source").to_string(),
                a[1].as_str().expect("destination").to_string(),
            )
        })
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[test]
fn package_assets_and_scripts_exist() {
    let deb = package_metadata_deb();
    for (source, _) in deb_assets(&deb) {
        if source.starts_with("target/") {
            continue; // built by `cargo deb`
        }
        if let Some(dir) = source.strip_suffix("/*.yml") {
            let found = fs::read_dir(repo_path(dir))
                .unwrap_or_else(|e| panic!("asset directory {dir}: {e}"))
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "yml"));
            assert!(found, "no file matches the asset {source}");
        } else {
            assert!(repo_path(&source).is_file(), "asset {source} is missing");
        }
    }
    let scripts = deb["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts");
    let units = deb["systemd-units"]["unit-scripts"]
        .as_str()
        .expect("systemd-units.unit-scripts");
    assert!(repo_path(units).join("turnd.service").is_file());
    for script in ["postinst", "postrm"] {
        let path = repo_path(scripts).join(script);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        // cargo-deb replaces every occurrence of the token, comments included.
        assert_eq!(
            text.matches("#DEBHELPER#").count(),
            1,
            "{path:?} must hold the debhelper token exactly once"
        );
        let run = run_with_timeout(Command::new("sh").arg("-n").arg(&path), TOOL_LIMIT);
        assert!(run.status.success(), "sh -n {path:?}:\n{}", run.output);
    }
}

// ------------------------------------------------------ Prometheus rules

/// One alerting rule of alerts.yml.
struct Rule {
    name: String,
    expr: String,
    rule: Yaml,
}

fn alert_rules() -> Vec<Rule> {
    let docs = YamlLoader::load_from_str(&read(ALERTS)).expect("alerts.yml is YAML");
    let groups = docs[0]["groups"].as_vec().expect("groups");
    let mut rules = Vec::new();
    for group in groups {
        for rule in group["rules"].as_vec().expect("a group has rules") {
            let name = rule["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_string();
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no expr"))
                .to_string();
            rules.push(Rule {
                name,
                expr,
                rule: rule.clone(),
            });
        }
    }
    assert!(!rules.is_empty(), "{ALERTS} has no rules");
    rules
}

#[test]
fn alerts_have_a_severity_a_summary_and_a_description() {
    let rules = alert_rules();
    let mut names = BTreeSet::new();
    for r in &rules {
        assert!(names.insert(r.name.clone()), "two alerts named {}", r.name);
        let severity = r.rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{}: severity {severity:?}",
            r.name
        );
        let summary = r.rule["annotations"]["summary"].as_str().unwrap_or("");
        assert!(
            summary.contains("{{ $labels.instance }}"),
            "{}: the summary must name the instance: {summary:?}",
            r.name
        );
        let description = r.rule["annotations"]["description"].as_str();
        assert!(
            description.is_some_and(|d| d.len() > 40),
            "{}: a description says what broke and what to do: {description:?}",
            r.name
        );
    }
    // What the operator guide (README, Monitoring) promises.
    for wanted in [
        "TurndDown",
        "TurndAuthFailureSpike",
        "TurndQuotaRejections",
        "TurndCapacityRejections",
        "TurndRelayPortsNearExhaustion",
        "TurndConfigReloadFailed",
        "TurndTlsReloadFailed",
        "TurndPeerDenialSpike",
        "TurndPacketDropSpike",
    ] {
        assert!(names.contains(wanted), "no alert {wanted} in {ALERTS}");
    }
}

#[test]
fn alert_rules_pass_promtool() {
    if !require_tool("promtool") {
        return;
    }
    run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(repo_path(ALERTS)),
    );
    run_ok(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(repo_path(SCRAPE_CONFIG)),
    );
    // Relative rule_files paths are taken from the test file's directory.
    run_ok(
        Command::new("promtool")
            .args(["test", "rules"])
            .arg(repo_path(ALERTS_TEST)),
    );
}

// ---------------------------------------------------------------- Grafana

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, those inside collapsed rows included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// A PromQL expression and where it was found, for messages.
struct Query {
    origin: String,
    expr: String,
}

fn dashboard_queries(dash: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                origin: format!(
                    "{DASHBOARD} panel {} {:?} query {}",
                    p["id"], p["title"], t["refId"]
                ),
                expr: t["expr"].as_str().expect("a target has an expr").into(),
            });
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            out.push(Query {
                origin: format!("{DASHBOARD} variable {}", v["name"]),
                expr: v["definition"].as_str().expect("definition").into(),
            });
        }
    }
    out
}

/// `expr` with the dashboard's variables replaced by what Grafana would
/// send, so promtool can parse it.
fn expand_variables(q: &Query) -> String {
    let expr = q
        .expr
        .replace("$__rate_interval", "5m")
        .replace("$job", "turnd")
        .replace("$instance", ".*");
    assert!(
        !expr.contains('$'),
        "{}: a variable this test does not know: {expr}",
        q.origin
    );
    expr
}

#[test]
fn dashboard_is_importable() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().expect("schemaVersion") >= 36,
        "schemaVersion"
    );
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    assert_eq!(var("instance")["type"], "query");
    assert_eq!(var("instance")["multi"], true);

    let datasource = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().expect("a panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().expect("gridPos"));
        assert!(x + w <= 24, "{title}: wider than the 24-column grid");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                    panic!("panels {other:?} and {title:?} overlap at x={cx} y={cy}");
                }
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], datasource, "{title}: datasource");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}: query datasource");
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: a panel says what it shows"
        );
    }
}

#[test]
fn dashboard_queries_filter_on_the_instance_variable() {
    for q in dashboard_queries(&dashboard()) {
        for s in selectors(&q.expr) {
            if !is_turnd_metric(&s.name) || q.origin.contains("variable") {
                continue;
            }
            for (label, var) in [("job", "$job"), ("instance", "$instance")] {
                assert!(
                    s.matchers
                        .iter()
                        .any(|m| m.label == label && m.op == "=~" && m.value == var),
                    "{}: {} has no {label}=~\"{var}\" matcher: {}",
                    q.origin,
                    s.name,
                    q.expr
                );
            }
        }
    }
}

#[test]
fn dashboard_queries_parse_as_promql() {
    if !require_tool("promtool") {
        return;
    }
    // promtool parses expressions only in rule files: make each query a
    // recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in dashboard_queries(&dashboard()).iter().enumerate() {
        let expr = expand_variables(q);
        // label_values() is Grafana's, not PromQL: check its selector.
        let expr = match expr
            .strip_prefix("label_values(")
            .and_then(|e| e.rsplit_once(','))
        {
            Some((selector, _)) => selector.to_string(),
            None => expr,
        };
        rules += &format!(
            "      # {}\n      - record: dashboard:query_{i}\n        expr: {}\n",
            q.origin.replace('\n', " "),
            serde_json::to_string(&expr).expect("quote")
        );
    }
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let file = dir.path().join("dashboard_rules.yml");
    fs::write(&file, &rules).expect("write the rules");
    let run = run_with_timeout(
        Command::new("promtool").args(["check", "rules"]).arg(&file),
        TOOL_LIMIT,
    );
    assert!(
        run.status.success(),
        "a dashboard query is not valid PromQL:\n{}\n{rules}",
        run.output
    );
}

// ------------------------------------------------ metrics against /metrics

/// One label matcher of a selector: `label op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// A metric named in an expression, with its `{...}` matchers if any.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

/// The metric names of an expression (identifiers, outside strings and
/// outside `{...}`, that are not followed by `(`) with their matchers.
/// Function names, keywords and the label lists of `by (...)`, `on (...)`
/// are identifiers too: callers keep the names they care about.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i).1;
        } else if c.is_ascii_digit() {
            // Numbers and durations ("5m", "0.9", "1e3").
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut matchers = Vec::new();
            if j < chars.len() && chars[j] == '{' {
                let (m, end) = parse_matchers(&chars, j, expr);
                matchers = m;
                i = end;
            } else if j < chars.len() && chars[j] == '(' {
                continue; // a function or an aggregation
            }
            out.push(Selector { name, matchers });
        } else {
            i += 1;
        }
    }
    out
}

/// The string starting at `chars[start]`: its unescaped text and the index
/// after its closing quote.
fn skip_string(chars: &[char], start: usize) -> (String, usize) {
    let quote = chars[start];
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
            i += 1;
        }
        text.push(chars[i]);
        i += 1;
    }
    (text, i + 1)
}

/// `{label op "value", ...}` from `chars[open]`: the matchers and the index
/// after `}`.
fn parse_matchers(chars: &[char], open: usize, expr: &str) -> (Vec<Matcher>, usize) {
    let mut i = open + 1;
    let mut out = Vec::new();
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        assert!(i < chars.len(), "unclosed {{ in {expr}");
        if chars[i] == '}' {
            return (out, i + 1);
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while chars[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while "=!~".contains(chars[i]) {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        while chars[i].is_whitespace() {
            i += 1;
        }
        assert!(
            !label.is_empty() && ["=", "!=", "=~", "!~"].contains(&op.as_str()),
            "cannot read the matcher at {:?} in {expr}",
            chars[start..].iter().collect::<String>()
        );
        let (value, end) = skip_string(chars, i);
        i = end;
        out.push(Matcher { label, op, value });
    }
}

fn is_turnd_metric(name: &str) -> bool {
    name.starts_with("turnd_") || name.starts_with("process_")
}

/// What one scrape serves: for each sample name, the label sets seen.
type Served = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// What is wrong with `q` against `served`, one line per problem.
fn problems(q: &Query, served: &Served) -> Vec<String> {
    let mut out = Vec::new();
    for s in selectors(&q.expr) {
        if !is_turnd_metric(&s.name) {
            continue;
        }
        let Some(series) = served.get(&s.name) else {
            out.push(format!("{}: metric {} is not served", q.origin, s.name));
            continue;
        };
        for m in &s.matchers {
            if TARGET_LABELS.contains(&m.label.as_str()) || m.value.contains('$') {
                continue;
            }
            let values: BTreeSet<&str> = series
                .iter()
                .filter_map(|labels| labels.get(&m.label).map(String::as_str))
                .collect();
            if values.is_empty() {
                out.push(format!(
                    "{}: {} has no label {:?}",
                    q.origin, s.name, m.label
                ));
                continue;
            }
            // Exact values, and regexes that are plain alternatives
            // ("a|b|c"), must each name a value turnd pre-creates.
            let plain = |v: &str| {
                !v.is_empty()
                    && v.split('|').all(|alt| {
                        !alt.is_empty()
                            && alt.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            };
            let wanted: Vec<&str> = match m.op.as_str() {
                "=" => vec![m.value.as_str()],
                "=~" | "!~" if plain(&m.value) => m.value.split('|').collect(),
                _ => Vec::new(),
            };
            for w in wanted {
                if !values.contains(w) {
                    out.push(format!(
                        "{}: {}{{{}{}\"{}\"}}: turnd serves no {}=\"{w}\" (it has {values:?})",
                        q.origin, s.name, m.label, m.op, m.value, m.label
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn selector_parser_reads_names_matchers_and_skips_the_rest() {
    let s = selectors(
        r#"sum by (instance, reason) (rate(turnd_x_total{reason!~"a|b", job="j"}[5m])) > on (instance) group_left () (10 + 0.05 * process_open_fds / turnd_y{k="v\"}"})"#,
    );
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sum",
            "instance",
            "reason",
            "turnd_x_total",
            "instance",
            "process_open_fds",
            "turnd_y"
        ]
    );
    let m = &s[3].matchers;
    assert_eq!(
        (m[0].label.as_str(), m[0].op.as_str(), m[0].value.as_str()),
        ("reason", "!~", "a|b")
    );
    assert_eq!(m[1].value, "j");
    assert_eq!(s[6].matchers[0].value, "v\"}");
}

/// The rules and the dashboard query only what turnd serves. The list of
/// names comes from the files, so a new panel or rule is checked with no
/// change here. `turnd_config_reloads_total{result}` (TurndConfigReloadFailed
/// and the Reloads panel) is the config-reload counter of issue 5: if this
/// fails naming it, the daemon does not export it (src/metrics.rs) yet.
#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_served() {
    let mut queries: Vec<Query> = alert_rules()
        .into_iter()
        .map(|r| Query {
            origin: format!("{ALERTS} alert {}", r.name),
            expr: r.expr,
        })
        .collect();
    queries.extend(dashboard_queries(&dashboard()));

    let used: BTreeSet<String> = queries
        .iter()
        .flat_map(|q| selectors(&q.expr))
        .map(|s| s.name)
        .filter(|n| is_turnd_metric(n))
        .collect();
    assert!(
        used.len() >= 15,
        "the rules and the dashboard use only {used:?}: is the parser broken?"
    );

    let daemon = TestConfig::default().start();
    let mut served = Served::new();
    for (name, labels, _) in daemon.scrape().0 {
        served
            .entry(name)
            .or_default()
            .push(labels.into_iter().collect());
    }

    let found: Vec<String> = queries.iter().flat_map(|q| problems(q, &served)).collect();
    let missing: BTreeSet<&String> = used.iter().filter(|n| !served.contains_key(*n)).collect();
    assert!(
        found.is_empty(),
        "deploy/ queries what turnd does not serve on /metrics.\n\
         Metrics missing: {missing:?}\n\
         Add them to src/metrics.rs, or fix the query:\n  {}",
        found.join("\n  ")
    );
}

/// The package carries the man pages, the shell completions and a
/// changelog, generated from the binary by scripts/build-deb.sh (which .ci/run
/// runs, then checks the .deb's contents), and the unit points at the page.
#[test]
fn package_ships_man_pages_completions_and_a_changelog() {
    let deb = package_metadata_deb();
    let assets = deb_assets(&deb);
    let script = read("scripts/build-deb.sh");
    for (dest, made_by) in [
        ("usr/share/man/man1/", "man --dir \"$assets/man\""),
        (
            "usr/share/bash-completion/completions/turnd",
            "completions bash",
        ),
        ("usr/share/zsh/vendor-completions/_turnd", "completions zsh"),
        (
            "usr/share/fish/vendor_completions.d/turnd.fish",
            "completions fish",
        ),
    ] {
        let (source, _) = assets
            .iter()
            .find(|(_, d)| d == dest)
            .unwrap_or_else(|| panic!("no asset installs {dest}"));
        assert!(source.starts_with("target/package-assets/"), "{source}");
        assert!(
            script.contains(made_by),
            "build-deb.sh does not run `{made_by}`"
        );
    }
    assert!(script.contains("cargo deb --locked --no-build"));
    let changelog = deb["changelog"]
        .as_str()
        .expect("[package.metadata.deb] changelog");
    let text = read(changelog);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.starts_with(&format!("turnd ({version}-")),
        "{changelog} does not start with this version's entry"
    );
    assert!(read(UNIT).contains("Documentation=man:turnd(1)"));
}
