//! Config errors and warnings, each tied to the JSON path of the value at fault.

/// A config problem that stops the process before anything is bound.
///
/// Displayed as `PATH: MESSAGE`, e.g.
/// `servers[0].listeners[1].address: "127.0.0.1:99999" is not a socket address`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// JSON path of the offending value (`servers[0].listeners[1].address`); empty for the root.
    pub path: String,
    /// What is wrong, quoting the value where there is one.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A non-fatal remark on the config (an unknown key, a key accepted but without effect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// JSON path of the key the warning is about.
    pub path: String,
    /// What was done with it.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Result of a parsing step.
pub type Result<T> = std::result::Result<T, ConfigError>;
