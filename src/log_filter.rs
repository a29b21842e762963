//! The log filter: `[log] level`, `--log-level` and `RUST_LOG` all go
//! through [`parse`], so `turnd check` refuses exactly what start-up would.
//!
//! A filter is a comma-separated list of directives, each a level or
//! `target=level`. Levels are `trace`, `debug`, `info`, `warn`, `error` and
//! `off`, plus the aliases of syslog and coturn listed in [`ALIASES`]. A bare
//! word that is not a level is refused: `tracing` would read it as a target
//! name and silence everything else. Warnings and errors are shown whatever
//! the filter says (see [`WARNINGS_ALWAYS`]).

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The level words `tracing` knows.
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Other spellings accepted for a level: syslog's and coturn's.
pub const ALIASES: &[(&str, &str)] = &[
    ("warning", "warn"),
    ("notice", "info"),
    ("verbose", "debug"),
    ("err", "error"),
];

/// Lines at this level or above pass whatever the filter says: a filter
/// can add detail but never hide a warning or an error.
pub const WARNINGS_ALWAYS: LevelFilter = LevelFilter::WARN;

/// The level a word names (an alias resolved), or `None`.
fn level(word: &str) -> Option<&'static str> {
    let word = word.trim().to_ascii_lowercase();
    LEVELS
        .iter()
        .copied()
        .find(|l| *l == word)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == word).map(|(_, l)| *l))
}

/// `spec` with aliases replaced by `tracing`'s level words, or why it is
/// not a filter.
pub fn normalize(spec: &str) -> Result<String, String> {
    let usage = "use trace, debug, info, warn, error or off (or warning, notice, verbose, err), \
                 or directives such as \"info,turnd=debug\"";
    if spec.trim().is_empty() {
        return Err(format!("the log filter is empty: {usage}"));
    }
    let mut out = Vec::new();
    for directive in spec.split(',') {
        let directive = directive.trim();
        if directive.is_empty() {
            return Err(format!("{spec:?} has an empty directive: {usage}"));
        }
        let (target, word) = match directive.rsplit_once('=') {
            Some((target, word)) => (Some(target.trim()), word),
            None => (None, directive),
        };
        let Some(lvl) = level(word) else {
            return Err(match target {
                None => format!("{word:?} in {spec:?} is not a log level: {usage}"),
                Some(_) => format!("{word:?} in {directive:?} is not a log level: {usage}"),
            });
        };
        match target {
            None => out.push(lvl.to_owned()),
            Some(t) if t.is_empty() || t.contains('=') => {
                return Err(format!(
                    "{directive:?} in {spec:?} is not TARGET=LEVEL: {usage}"
                ))
            }
            Some(t) => out.push(format!("{t}={lvl}")),
        }
    }
    Ok(out.join(","))
}

/// The filter `spec` describes, or why it is not one.
pub fn parse(spec: &str) -> Result<EnvFilter, String> {
    let normalized = normalize(spec)?;
    EnvFilter::builder()
        .with_regex(false)
        .parse(&normalized)
        .map_err(|e| format!("{spec:?} is not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_aliases() {
        assert_eq!(normalize("warning").unwrap(), "warn");
        assert_eq!(normalize("Verbose").unwrap(), "debug");
        assert_eq!(normalize("info,turnd=warning").unwrap(), "info,turnd=warn");
        assert_eq!(normalize("turnd::net=trace").unwrap(), "turnd::net=trace");
        assert!(parse("info,turnd=debug").is_ok());
    }

    #[test]
    fn words_that_are_not_levels_are_refused() {
        for bad in [
            "warnings",
            "loud",
            "",
            "info,",
            "debug,foo=bar=baz",
            "turnd=",
            "=info",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
