//! Secrets: a value whose `Debug` never shows it, read from a systemd credential
//! (`$CREDENTIALS_DIRECTORY/<name>`, as `LoadCredential=` provides it) or else an
//! environment variable. Never from the TOML, never logged.

use std::fmt;
use std::path::Path;

/// A secret the configuration names could not be read.
#[derive(Debug, thiserror::Error)]
#[error("secret {name}: {message}")]
pub struct Error {
    /// Which secret (never its value).
    pub name: String,
    /// Where it was looked for and what went wrong.
    pub message: String,
}

/// A secret value. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value; only for comparing or sending, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret from the systemd credential `credential`
/// (`$CREDENTIALS_DIRECTORY/<credential>`) or else the environment variable `env`.
/// `Ok(None)` when neither is set.
pub fn read_secret(env: &str, credential: &str) -> Result<Option<Secret>, Error> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(credential);
        match std::fs::read_to_string(&path) {
            Ok(value) => {
                let value = value.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    return Err(Error {
                        name: credential.to_owned(),
                        message: format!("credential file {} is empty", path.display()),
                    });
                }
                return Ok(Some(Secret::new(value)));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(Error {
                    name: credential.to_owned(),
                    message: format!("{}: {error}", path.display()),
                });
            }
        }
    }
    match std::env::var(env) {
        Ok(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
