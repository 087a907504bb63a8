//! Config errors and warnings, each tied to the JSON path of the value at fault.

/// A config problem that stops the process before anything is bound.
///
/// Displayed as `PATH: MESSAGE`, e.g.
/// `servers[0].listeners[1].address: "127.0.0.1:99999" is not a socket address`, or `MESSAGE` alone
/// for a problem with the file itself (unreadable, not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending value (`servers[0].listeners[1].address`); empty for the file
    /// itself.
    pub path: String,
    /// What is wrong, quoting the value where there is one.
    pub message: String,
    /// The warnings met before the error (unknown keys often explain it: `adress`), to be shown
    /// with it.
    pub warnings: Vec<ConfigWarning>,
}

impl ConfigError {
    /// Builds an error for `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            warnings: Vec::new(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A non-fatal remark on the config (an unknown key, a key accepted but without effect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// JSON path of the key the warning is about.
    pub path: String,
    /// What was done with it.
    pub message: String,
    /// True for a key nobody reads (a typo, or a key of another MOSN version): an error under
    /// `mosn check --strict`.
    pub unknown_key: bool,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Result of a parsing step.
pub type Result<T> = std::result::Result<T, ConfigError>;
