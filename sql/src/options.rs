use std::collections::BTreeMap;
use std::fmt;

use crate::{Error, Result};

/// A value in a `WITH (...)` list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionValue(pub String);

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `WITH (key = value, ...)` options of a statement.
///
/// Keys are case-insensitive (stored lower-case). Consumers take the options
/// they understand and then call [`Options::finish`], so an option nobody
/// took is reported rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    values: BTreeMap<String, OptionValue>,
}

impl Options {
    /// Options from key/value pairs; a repeated key is an error.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (key, value) in pairs {
            let key = key.to_ascii_lowercase();
            if values.insert(key.clone(), OptionValue(value)).is_some() {
                return Err(Error::invalid(format!("option '{key}' is given twice")));
            }
        }
        Ok(Options { values })
    }

    /// The raw value of `key`, without consuming it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|v| v.0.as_str())
    }

    /// Whether no options are left.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// All options in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.0.as_str()))
    }

    /// Removes and returns `key`.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key).map(|v| v.0)
    }

    /// Removes and returns `key`, which `owner` requires.
    pub fn take_required(&mut self, key: &str, owner: &str) -> Result<String> {
        self.take(key)
            .ok_or_else(|| Error::invalid(format!("{owner} requires option '{key}'")))
    }

    /// Removes `key` and checks it is one of `allowed` (case-insensitive);
    /// returns it lower-cased.
    pub fn take_choice(&mut self, key: &str, allowed: &[&str]) -> Result<Option<String>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let lower = value.to_ascii_lowercase();
        if allowed.contains(&lower.as_str()) {
            Ok(Some(lower))
        } else {
            Err(Error::invalid(format!(
                "invalid value '{value}' for option '{key}': expected one of: {}",
                allowed.join(", ")
            )))
        }
    }

    /// Removes `key` and parses it as a number.
    pub fn take_parsed<T: std::str::FromStr>(
        &mut self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        value.trim().parse::<T>().map(Some).map_err(|_| {
            Error::invalid(format!(
                "invalid value '{value}' for option '{key}': expected {what}"
            ))
        })
    }

    /// Removes `key` and parses it as a boolean (`true`/`false`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        Ok(self
            .take_choice(key, &["true", "false"])?
            .map(|v| v == "true"))
    }

    /// Removes `key` and parses it as a duration (`10s`, `5 minutes`, `250ms`).
    pub fn take_duration(&mut self, key: &str) -> Result<Option<std::time::Duration>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        crate::parse_duration_option(key, &value).map(Some)
    }

    /// Fails if an option is not among `valid`, naming it and listing the
    /// valid ones. Checked before any value is read, so a misspelt option
    /// is reported as such rather than as a missing one.
    pub fn check_known(&self, owner: &str, valid: &[&str]) -> Result<()> {
        match self.values.keys().find(|k| !valid.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(Error::invalid(format!(
                "unknown option '{key}' for {owner}; valid options: {}",
                valid.join(", ")
            ))),
        }
    }

    /// Fails if any option was not taken, naming the first and listing the
    /// valid ones.
    pub fn finish(self, owner: &str, valid: &[&str]) -> Result<()> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(Error::invalid(format!(
                "unknown option '{key}' for {owner}; valid options: {}",
                valid.join(", ")
            ))),
        }
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.values {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k} = '{}'", v.0.replace('\'', "''"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Options {
        Options::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn leftover_options_are_reported_with_the_valid_ones() {
        let mut o = opts(&[("path", "x"), ("pth", "y")]);
        assert_eq!(o.take("path").as_deref(), Some("x"));
        let err = o
            .finish("connector 'file'", &["path", "format"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown option 'pth' for connector 'file'; valid options: path, format"
        );
    }

    #[test]
    fn choices_and_numbers_are_validated() {
        let mut o = opts(&[("format", "XML"), ("rate", "fast")]);
        let err = o.take_choice("format", &["json", "csv"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value 'XML' for option 'format': expected one of: json, csv"
        );
        let err = o.take_parsed::<u64>("rate", "a whole number").unwrap_err();
        assert!(err.to_string().contains("expected a whole number"), "{err}");
        assert!(Options::from_pairs([("a".into(), "1".into()), ("A".into(), "2".into())]).is_err());
    }
}
