//! The client secret (and other credentials) as a type that cannot be printed by accident.
//!
//! The secret comes from the environment variable named by `target.client_secret_env` or from
//! the first line of `target.client_secret_file`; never from a flag. `Debug` and `Display`
//! print `***`, so a secret that ends up in a log line or an error message stays hidden.

use std::fmt;
use std::path::Path;

/// A credential whose value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it (the token request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("environment variable {0} (target.client_secret_env) is not set or empty")]
    EnvMissing(String),
    #[error("cannot read target.client_secret_file {path}: {message}")]
    File { path: String, message: String },
    #[error("target.client_secret_file {0} is empty")]
    FileEmpty(String),
    #[error("set target.client_secret_env or target.client_secret_file")]
    NotConfigured,
}

/// Load the client secret: the file wins when both are configured (a file is the more
/// deliberate choice; the env default `ORDERLOAD_CLIENT_SECRET` is always present in config).
pub fn load_client_secret(
    env_name: Option<&str>,
    file: Option<&Path>,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> Result<Secret, SecretError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| SecretError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(SecretError::FileEmpty(path.display().to_string()));
        }
        return Ok(Secret::new(first));
    }
    if let Some(name) = env_name {
        return match lookup_env(name) {
            Some(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
            _ => Err(SecretError::EnvMissing(name.to_string())),
        };
    }
    Err(SecretError::NotConfigured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_env_and_file() {
        let s = load_client_secret(Some("X"), None, |n| (n == "X").then(|| " v \n".into()));
        assert_eq!(s.unwrap().expose(), "v");
        let err = load_client_secret(Some("X"), None, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable X (target.client_secret_env) is not set or empty"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\nignored\n").unwrap();
        let s = load_client_secret(Some("X"), Some(&path), |_| None).unwrap();
        assert_eq!(s.expose(), "from-file");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            load_client_secret(None, Some(&path), |_| None),
            Err(SecretError::FileEmpty(_))
        ));
    }
}
