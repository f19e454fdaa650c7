//! User-facing errors that point at a file, a line and a field.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where in a file a problem was found: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Turns a byte offset into a 1-based line and column.
    pub fn from_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        Location { line, column }
    }
}

/// An error in an experiment file or a manifest, written for the person who will fix it:
/// what went wrong, where (`file:line:column`), and a `help:` line when there is an obvious fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub location: Option<Location>,
    pub message: String,
    pub help: Option<String>,
}

impl SpecError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        SpecError {
            file: file.to_path_buf(),
            location: None,
            message: message.into(),
            help: None,
        }
    }

    /// An error at a byte span of the file's text.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        SpecError {
            location: Some(Location::from_offset(text, span.start)),
            ..SpecError::new(file, message)
        }
    }

    /// An error at the first mention of `key` in the file's text, or about the whole file.
    pub fn near(file: &Path, text: &str, key: &str, message: impl Into<String>) -> Self {
        match text.find(key) {
            Some(at) => SpecError::at(file, text, at..at + key.len(), message),
            None => SpecError::new(file, message),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Converts a TOML parse or schema error (malformed TOML, unknown key, wrong type).
    pub fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> Self {
        let message = err.message().trim().to_string();
        let mut error = match err.span() {
            Some(span) => SpecError::at(file, text, span, message.clone()),
            None => SpecError::new(file, message.clone()),
        };
        if message.starts_with("unknown field") {
            error =
                error.with_help("remove the key or fix its spelling; the README lists every key");
        }
        error
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        match self.location {
            Some(loc) => write!(
                f,
                "\n  --> {}:{}:{}",
                self.file.display(),
                loc.line,
                loc.column
            )?,
            None => write!(f, "\n  --> {}", self.file.display())?,
        }
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(
            Location::from_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::from_offset(text, 6),
            Location { line: 2, column: 1 }
        );
        assert_eq!(
            Location::from_offset(text, 11),
            Location { line: 2, column: 6 }
        );
    }
}
