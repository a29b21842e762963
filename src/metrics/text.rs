//! A small parser of the Prometheus text exposition format, for tests that
//! scrape `/metrics` over HTTP and compare values.

/// One sample: metric name, labels in the order written, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses text exposition format line by line: `# HELP name text` and
/// `# TYPE name kind` comments are checked and skipped, every other
/// non-empty line must be `name{label="value",...} value [timestamp]`.
///
/// # Panics
/// On any malformed line, naming its line number: this is a test helper.
pub fn parse_prometheus_text(s: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (i, line) in s.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", i + 1) };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("HELP") => {
                    let name = words.next().unwrap_or("");
                    if !is_name(name) {
                        fail("bad metric name in HELP");
                    }
                }
                Some("TYPE") => {
                    let name = words.next().unwrap_or("");
                    if !is_name(name) {
                        fail("bad metric name in TYPE");
                    }
                    match words.next() {
                        Some("counter" | "gauge" | "histogram" | "summary" | "untyped") => {}
                        _ => fail("bad TYPE"),
                    }
                }
                _ => {} // a free-form comment
            }
            continue;
        }
        match parse_sample(line) {
            Ok(sample) => samples.push(sample),
            Err(why) => fail(why),
        }
    }
    samples
}

/// The value of the sample named `name` whose labels are exactly `labels`
/// (in any order), if there is one.
pub fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let label = &rest[..eq];
            if !is_name(label) || label.contains(':') {
                return Err("bad label name");
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (at, '"') => break at,
                    (_, '\\') => match chars.next().ok_or("unterminated label value")?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        _ => return Err("bad escape in label value"),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            rest = &rest[close + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after label");
            }
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before value")?
        .split(' ');
    let value = fields.next().ok_or("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v if v
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            v.parse().map_err(|_| "bad value")?
        }
        _ => return Err("bad value"),
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing fields");
    }
    Ok((name.to_owned(), labels, value))
}
