//! Environment overrides: `TURND_*` variables that replace single config
//! keys, for the values that differ per node or come from a secret store
//! (a container's environment, a Kubernetes downward API field, a mounted
//! Secret). The file stays the reference; a variable wins over its key.
//!
//! Strict like the file: a `TURND_` variable that is neither an override
//! nor one the command line reads ([`CLI_VARIABLES`]) is an error, so a
//! misspelt override never goes unnoticed. Values are parsed by the same
//! functions as the file's keys, so errors read the same, prefixed with the
//! variable's name. [`sources`] says, per overridable key, whether its value
//! came from the environment, the file or the built-in default (what
//! `turnd check` prints).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::value::Error as ValueError;
use serde::de::IntoDeserializer;
use serde::Deserialize;

use super::relay::FamilyAddrs;
use super::types::{de_realm, with_base_dir, FileSecret};
use super::{drain, stream, Config, LogFormat, PortRange};

/// The prefix every turnd variable starts with.
pub const PREFIX: &str = "TURND_";

/// Variables the command line reads (clap), not config keys: valid, and
/// not overrides. TURND_LOG_FORMAT is both: clap reads it for the server's
/// own logging, and it overrides `log.format` here so `check` shows it.
pub const CLI_VARIABLES: &[&str] = &["TURND_CONFIG"];

/// One override: the variable, the key it replaces, how to apply a value
/// and how to show the key's value afterwards.
pub struct Override {
    pub var: &'static str,
    pub key: &'static str,
    apply: fn(&mut Config, &str, &Path) -> Result<(), String>,
    show: fn(&Config) -> String,
    /// The file keys that give the same value (any present means "file").
    file_keys: &'static [&'static str],
}

/// Every override, in the order `check` lists them.
pub const OVERRIDES: &[Override] = &[
    Override {
        var: "TURND_REALM",
        key: "realm",
        apply: |c, v, _| {
            c.realm = de_realm(v.into_deserializer()).map_err(msg)?;
            Ok(())
        },
        show: |c| format!("{:?}", c.realm),
        file_keys: &["realm"],
    },
    Override {
        var: "TURND_LISTEN_UDP",
        key: "listen.udp",
        apply: |c, v, _| {
            c.listen.udp = addrs(v, super::types::de_udp_listeners)?;
            Ok(())
        },
        show: |c| show_addrs(&c.listen.udp),
        file_keys: &["listen"],
    },
    Override {
        var: "TURND_LISTEN_TCP",
        key: "listen.tcp",
        apply: |c, v, _| {
            c.listen.tcp = addrs(v, stream::de_tcp)?;
            Ok(())
        },
        show: |c| show_addrs(&c.listen.tcp),
        file_keys: &["listen"],
    },
    Override {
        var: "TURND_LISTEN_TLS",
        key: "listen.tls",
        apply: |c, v, _| {
            c.listen.tls = addrs(v, stream::de_tls)?;
            Ok(())
        },
        show: |c| show_addrs(&c.listen.tls),
        file_keys: &["listen"],
    },
    Override {
        var: "TURND_RELAY_BIND",
        key: "relay.bind",
        apply: |c, v, _| {
            c.relay.bind = FamilyAddrs::parse_list("relay.bind", v)?;
            Ok(())
        },
        show: |c| c.relay.bind.to_string(),
        file_keys: &["relay.bind"],
    },
    Override {
        var: "TURND_RELAY_EXTERNAL",
        key: "relay.external",
        apply: |c, v, _| {
            c.relay.external = FamilyAddrs::parse_list("relay.external", v)?;
            Ok(())
        },
        show: |c| c.relay.external.to_string(),
        file_keys: &["relay.external"],
    },
    Override {
        var: "TURND_RELAY_PORTS",
        key: "relay.ports",
        apply: |c, v, _| {
            c.relay.ports = v
                .parse::<PortRange>()
                .map_err(|e| format!("relay.ports: {e}"))?;
            Ok(())
        },
        show: |c| c.relay.ports.to_string(),
        file_keys: &["relay.ports"],
    },
    Override {
        var: "TURND_REST_SECRET_FILES",
        key: "rest.secrets",
        apply: |c, v, dir| {
            let paths = list(v);
            if paths.is_empty() {
                return Err("give at least one secret file".into());
            }
            let secrets = with_base_dir(dir, || {
                paths
                    .iter()
                    .map(|p| FileSecret::deserialize(p.as_str().into_deserializer()).map(|f| f.0))
                    .collect::<Result<Vec<_>, ValueError>>()
            })
            .map_err(msg)?;
            c.rest.secrets = secrets;
            Ok(())
        },
        show: |c| match c.rest.secrets.len() {
            0 => "(none)".into(),
            1 => "1 secret".into(),
            n => format!("{n} secrets"),
        },
        file_keys: &["rest.secrets", "rest.secret_files"],
    },
    Override {
        var: "TURND_HTTP_LISTEN",
        key: "http.listen",
        apply: |c, v, _| {
            let addr = super::types::de_http_listen(v.into_deserializer()).map_err(msg)?;
            c.http.listen = Some(addr);
            Ok(())
        },
        show: |c| c.http.listen.map_or("(off)".into(), |a| a.to_string()),
        file_keys: &["http.listen", "http.enabled"],
    },
    Override {
        var: "TURND_LOG_FORMAT",
        key: "log.format",
        apply: |c, v, _| {
            c.log.format =
                LogFormat::deserialize(v.into_deserializer()).map_err(|_: ValueError| {
                    format!("log.format: {v:?} is neither \"text\" nor \"json\"")
                })?;
            Ok(())
        },
        show: |c| match c.log.format {
            LogFormat::Text => "text".into(),
            LogFormat::Json => "json".into(),
        },
        file_keys: &["log.format"],
    },
    Override {
        var: "TURND_WORKERS",
        key: "workers",
        apply: |c, v, _| {
            c.workers = v
                .parse()
                .map_err(|_| format!("workers: {v:?} is not a number of threads"))?;
            Ok(())
        },
        show: |c| c.workers.to_string(),
        file_keys: &["workers"],
    },
    Override {
        var: "TURND_DRAIN_ALTERNATE_SERVER",
        key: "drain.alternate_server",
        apply: |c, v, _| {
            // One address, or one per family separated by a comma.
            let list: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let seq: serde::de::value::SeqDeserializer<_, ValueError> = list.into_deserializer();
            c.drain.alternate_server = drain::de_alternate(seq).map_err(msg)?;
            Ok(())
        },
        show: |c| {
            let a = c.drain.alternate_server;
            let list: Vec<String> =
                a.v4.iter()
                    .chain(a.v6.iter())
                    .map(|a| a.to_string())
                    .collect();
            if list.is_empty() {
                "(none)".into()
            } else {
                list.join(",")
            }
        },
        file_keys: &["drain.alternate_server"],
    },
];

fn msg(e: ValueError) -> String {
    e.to_string()
}

/// A comma-separated list, items trimmed, empty items dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a `listen.*` key's deserializer takes here: the list, item by item.
type ListDeserializer = serde::de::value::SeqDeserializer<std::vec::IntoIter<String>, ValueError>;

fn addrs(
    v: &str,
    de: fn(ListDeserializer) -> Result<Vec<SocketAddr>, ValueError>,
) -> Result<Vec<SocketAddr>, String> {
    de(list(v).into_deserializer()).map_err(msg)
}

fn show_addrs(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "(none)".into();
    }
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The suffix of a variable that names a file holding the value
/// (`TURND_RELAY_EXTERNAL_FILE=/run/turnd/external`), as Docker and
/// Kubernetes secrets and init containers hand values over.
pub const FILE_SUFFIX: &str = "_FILE";

/// Applies every `TURND_*` override found in `vars` to `config`; relative
/// paths (secret files, `_FILE` variables) are taken from `base_dir` (the
/// config file's directory). Returns the variables applied, in
/// [`OVERRIDES`] order. An unknown `TURND_` variable, both `X` and `X_FILE`,
/// a value that is not UTF-8 or that does not parse is an error naming the
/// variable.
pub fn apply(
    config: &mut Config,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    base_dir: &Path,
) -> Result<Vec<String>, String> {
    let mut found: Vec<(usize, String, OsString)> = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) || CLI_VARIABLES.contains(&name) {
            continue;
        }
        let base = name.strip_suffix(FILE_SUFFIX).unwrap_or(name);
        let index = OVERRIDES
            .iter()
            .position(|o| o.var == name)
            .or_else(|| OVERRIDES.iter().position(|o| o.var == base))
            .ok_or_else(|| unknown(name))?;
        if let Some((_, other, _)) = found.iter().find(|(i, _, _)| *i == index) {
            return Err(format!(
                "environment variables {other} and {name} both set {}: keep one",
                OVERRIDES[index].key
            ));
        }
        found.push((index, name.to_owned(), value));
    }
    found.sort_by_key(|(index, _, _)| *index);
    let mut applied = Vec::with_capacity(found.len());
    for (index, name, value) in found {
        let o = &OVERRIDES[index];
        let value = value
            .to_str()
            .ok_or_else(|| format!("environment variable {name}: the value is not UTF-8"))?;
        let value = if name == o.var {
            value.trim().to_owned()
        } else {
            let path = base_dir.join(value.trim());
            std::fs::read_to_string(&path)
                .map_err(|e| {
                    format!(
                        "environment variable {name}: cannot read {}: {e}",
                        path.display()
                    )
                })?
                .trim()
                .to_owned()
        };
        (o.apply)(config, &value, base_dir)
            .map_err(|e| format!("environment variable {name} ({value:?}): {e}"))?;
        applied.push(name);
    }
    Ok(applied)
}

fn unknown(name: &str) -> String {
    let known: Vec<&str> = CLI_VARIABLES
        .iter()
        .copied()
        .chain(OVERRIDES.iter().map(|o| o.var))
        .collect();
    format!(
        "unknown environment variable {name}: turnd reads only {} (each also as NAME_FILE, \
         naming a file that holds the value; README: Environment overrides); unset it or fix \
         its name",
        known.join(", ")
    )
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (the key is not in the file, or there is none).
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Environment(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Environment(var) => write!(f, "environment {var}"),
        }
    }
}

/// One overridable key's value (secrets only counted) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
}

/// The source of every overridable key of `config`: `applied` are the
/// variables [`apply`] used, `file` the config file's text and path.
pub fn sources(
    config: &Config,
    file: Option<(&str, &Path)>,
    applied: &[String],
) -> Vec<Provenance> {
    let table = file.and_then(|(text, path)| {
        toml::from_str::<toml::Table>(text)
            .ok()
            .map(|t| (t, path.to_path_buf()))
    });
    OVERRIDES
        .iter()
        .map(|o| {
            let used = applied
                .iter()
                .find(|a| a.as_str() == o.var || a.strip_suffix(FILE_SUFFIX) == Some(o.var));
            let source = if let Some(var) = used {
                Source::Environment(var.clone())
            } else {
                match &table {
                    Some((t, path)) if o.file_keys.iter().any(|k| has_key(t, k)) => {
                        Source::File(path.clone())
                    }
                    _ => Source::Default,
                }
            };
            Provenance {
                key: o.key,
                value: (o.show)(config),
                source,
            }
        })
        .collect()
}

/// Whether a dotted key path is present in a TOML table.
fn has_key(table: &toml::Table, key: &str) -> bool {
    let mut parts = key.split('.');
    let Some(first) = parts.next() else {
        return false;
    };
    let mut value = match table.get(first) {
        Some(v) => v,
        None => return false,
    };
    for part in parts {
        match value.get(part) {
            Some(v) => value = v,
            None => return false,
        }
    }
    true
}
