use std::path::PathBuf;

use thiserror::Error;

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A key is not known, or its value has the wrong type or form.
    #[error("{from}: key `{key}`: {reason}")]
    Key {
        /// Where the value came from: a file path, an environment variable or a flag.
        from: String,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An environment variable or flag could not be read as an override.
    #[error("{from}: {reason}")]
    Override {
        /// The variable or flag.
        from: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn key(source: impl Into<String>, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Key { from: source.into(), key: key.into(), reason: reason.into() }
    }
}

/// A check's failure: the key at fault and why (turned into a [`ConfigError`] by the loader).
pub(crate) fn fail<T>(key: &str, reason: impl Into<String>) -> Result<T, (String, String)> {
    Err((key.to_string(), reason.into()))
}
