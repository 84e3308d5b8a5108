//! Layered configuration: built-in defaults, then one TOML file, then `TONEARM_*`
//! environment variables (`TONEARM_SECTION__KEY`, double underscore between levels).
//!
//! Every section is a plain `#[serde(default)]` struct owned by the crate that reads it;
//! this module only knows how to layer sources onto such a struct.

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::de::DeserializeOwned;

pub const ENV_PREFIX: &str = "TONEARM_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
}

/// Loads `T` from defaults, the optional file and the environment, in that order.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_from(file, Env::prefixed(ENV_PREFIX).split("__"))
}

fn load_from<T: DeserializeOwned>(file: Option<&Path>, env: Env) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.to_owned()));
        }
        figment = figment.merge(Toml::file(path));
    }
    // `TONEARM_CONFIG` names the file itself, not a setting.
    let env = env.ignore(&["config"]);
    figment.merge(env).extract().map_err(|error| ConfigError::Invalid(Box::new(error)))
}

/// Parses a TOML document over the defaults (used to check the shipped default file).
pub fn from_toml<T: DeserializeOwned>(toml: &str) -> Result<T, ConfigError> {
    Figment::new()
        .merge(Toml::string(toml))
        .extract()
        .map_err(|error| ConfigError::Invalid(Box::new(error)))
}

#[cfg(test)]
// `figment::Jail` closures must return its large `figment::Error`.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default)]
    struct Root {
        server: Server,
        name: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default)]
    struct Server {
        port: u16,
        grace_secs: u64,
    }

    impl Default for Server {
        fn default() -> Self {
            Self { port: 8080, grace_secs: 30 }
        }
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tonearm.toml", "name = \"from-file\"\n[server]\nport = 9000\n")?;
            jail.set_env("TONEARM_SERVER__GRACE_SECS", "5");
            jail.set_env("TONEARM_NAME", "from-env");
            let root: Root = load(Some(Path::new("tonearm.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(root.server.port, 9000, "file beats default");
            assert_eq!(root.server.grace_secs, 5, "environment beats default");
            assert_eq!(root.name, "from-env", "environment beats file");
            Ok(())
        });
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let error = load::<Root>(Some(Path::new("/nonexistent/tonearm.toml"))).unwrap_err();
        assert!(matches!(error, ConfigError::MissingFile(_)));
    }

    #[test]
    fn a_wrongly_typed_value_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TONEARM_SERVER__PORT", "eighty");
            assert!(load::<Root>(None).is_err());
            Ok(())
        });
    }
}
