use std::collections::BTreeMap;
use std::path::Path;

use toml::{Table, Value};

use crate::{ConfigError, RoleConfig};

/// Keys whose values are secrets (`crate::Secret`): read as strings
/// whatever they look like, and never shown in an error.
const SECRET_KEYS: &[&str] = &["storefront_token", "cluster_token", "member_key", "member_credential", "certificate"];

/// Where a value came from, so an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built-in default.
    Default,
    /// A TOML file.
    File(String),
    /// An environment variable.
    Env(String),
    /// A `--set` flag.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("defaults"),
            Source::File(p) => f.write_str(p),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(a) => write!(f, "flag --set {a}"),
        }
    }
}

/// The layers of one role's configuration, merged in order.
#[derive(Debug)]
pub struct Layers {
    role: &'static str,
    table: Table,
    sources: BTreeMap<String, Source>,
    base: Source,
}

impl Layers {
    /// Starts from the role's defaults.
    pub fn new(role: &'static str) -> Self {
        Self { role, table: Table::new(), sources: BTreeMap::new(), base: Source::Default }
    }

    /// Reads a TOML file, if one is given.
    pub fn file(mut self, path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(self) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        self = self.toml(&text, Source::File(path.display().to_string()))?;
        Ok(self)
    }

    /// Merges TOML text (a file's contents) from `source`.
    pub fn toml(mut self, text: &str, source: Source) -> Result<Self, ConfigError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: source.to_string().into(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        self.base = source;
        merge(&mut self.table, table, "", &mut self.sources, &self.base);
        Ok(self)
    }

    /// Applies `TRANZCAST_<ROLE>__KEY__SUBKEY=value` variables from `vars`
    /// (errors name the variable, never its value).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let prefix = format!("TRANZCAST_{}__", self.role.to_ascii_uppercase());
        let mut found: Vec<(String, String)> = vars.into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        found.sort();
        for (var, value) in found {
            let path: Vec<String> = var[prefix.len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Override { from: format!("environment variable {var}"), reason: "empty key segment".into() });
            }
            self.set(&path, &value, Source::Env(var.clone()))?;
        }
        Ok(self)
    }

    /// Applies `key.path=value` overrides (the `--set` flags).
    pub fn overrides(mut self, sets: &[String]) -> Result<Self, ConfigError> {
        for arg in sets {
            let Some((key, value)) = arg.split_once('=') else {
                return Err(ConfigError::Override { from: format!("flag --set {arg}"), reason: "expected key.path=value".into() });
            };
            let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Override { from: format!("flag --set {arg}"), reason: "empty key segment".into() });
            }
            // A secret's value never goes into an error message.
            let shown =
                if path.last().is_some_and(|k| SECRET_KEYS.contains(&k.as_str())) { format!("{key}=<secret>") } else { arg.clone() };
            self.set(&path, value.trim(), Source::Flag(shown))?;
        }
        Ok(self)
    }

    fn set(&mut self, path: &[String], raw: &str, source: Source) -> Result<(), ConfigError> {
        // A value is read as TOML when it parses as one (numbers, booleans,
        // arrays, quoted strings), and as a bare string otherwise.
        let secret = path.last().is_some_and(|k| SECRET_KEYS.contains(&k.as_str()));
        let value = if secret {
            Value::String(raw.to_string())
        } else {
            format!("v = {raw}").parse::<Table>().ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| Value::String(raw.to_string()))
        };
        let mut table = &mut self.table;
        for (i, part) in path[..path.len() - 1].iter().enumerate() {
            let entry = table.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(t) => table = t,
                _ => return Err(ConfigError::key(source.to_string(), path[..=i].join("."), "is not a table")),
            }
        }
        let key = path.join(".");
        table.insert(path[path.len() - 1].clone(), value);
        self.sources.insert(key, source);
        Ok(())
    }

    fn source_of(&self, key: &str) -> &Source {
        let mut k = key;
        loop {
            if let Some(s) = self.sources.get(k) {
                return s;
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => return &self.base,
            }
        }
    }

    /// Builds and validates the typed config.
    pub fn build<T: RoleConfig>(self) -> Result<T, ConfigError> {
        let value = Value::Table(self.table.clone());
        let config: T = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            let inner = inner.lines().next().unwrap_or("").trim().to_string();
            // serde names an unknown field inside the message; point at it.
            let key = match inner.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
                Some(f) if key == "." || key.is_empty() => f.to_string(),
                Some(f) if key == f || key.ends_with(&format!(".{f}")) => key,
                Some(f) => format!("{key}.{f}"),
                None => key,
            };
            ConfigError::key(self.source_of(&key).to_string(), key, inner)
        })?;
        config.validate().map_err(|(key, reason)| ConfigError::key(self.source_of(&key).to_string(), key, reason))?;
        Ok(config)
    }
}

fn merge(dst: &mut Table, src: Table, prefix: &str, sources: &mut BTreeMap<String, Source>, from: &Source) {
    for (k, v) in src {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (dst.get_mut(&k), v) {
            (Some(Value::Table(d)), Value::Table(s)) => merge(d, s, &path, sources, from),
            (_, v) => {
                sources.insert(path, from.clone());
                dst.insert(k, v);
            }
        }
    }
}
