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

    /// An error at the line that sets `path`: `table.key` is the line `key = …` inside
    /// `[table]` (tables may be dotted, `networks.finetune.epochs`); a path without a dot is a
    /// key before any table. Without such a line, the error points at the table's header, then
    /// at the first mention of the path's last part, then at the whole file.
    pub fn near(file: &Path, text: &str, path: &str, message: impl Into<String>) -> Self {
        let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
        let span = find_key(text, table, key)
            .or_else(|| {
                (!table.is_empty())
                    .then(|| find_table(text, table))
                    .flatten()
            })
            .or_else(|| text.find(key).map(|at| at..at + key.len()));
        match span {
            Some(span) => SpecError::at(file, text, span, message),
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

/// The lines of a TOML text with their byte offsets and the table each one is in (`""` before
/// any table header; `[[hypothesis]]` is the table `hypothesis`).
fn lines_with_tables(text: &str) -> impl Iterator<Item = (usize, &str, String)> {
    let mut table = String::new();
    let mut offset = 0;
    text.split_inclusive('\n').map(move |line| {
        let at = offset;
        offset += line.len();
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[') {
            let header = header.split('#').next().unwrap_or("");
            table = header
                .trim_start_matches('[')
                .trim_end()
                .trim_end_matches(']')
                .trim()
                .to_string();
        }
        (at, line, table.clone())
    })
}

/// The span of `key` where `key = …` is set directly inside `[table]`.
pub fn find_key(text: &str, table: &str, key: &str) -> Option<Range<usize>> {
    lines_with_tables(text).find_map(|(at, line, in_table)| {
        if in_table != table {
            return None;
        }
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start().strip_prefix(key)?;
        rest.trim_start()
            .starts_with('=')
            .then(|| at + indent..at + indent + key.len())
    })
}

/// The span of the header `[table]` (or `[[table]]`).
pub fn find_table(text: &str, table: &str) -> Option<Range<usize>> {
    lines_with_tables(text).find_map(|(at, line, in_table)| {
        let header = line.trim_start().starts_with('[') && in_table == table;
        header.then(|| at..at + line.trim_end().len())
    })
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
    fn a_key_is_found_in_its_own_table_not_where_its_name_first_appears() {
        let text = "# batch_size = 3 in a comment\ndescription = \"batch_size\"\n[pretrain]\nbatch_size = 64\n\n[finetune]\nepochs = 2\n  batch_size = 0\n[networks.finetune]\nbatch_size = 1\n";
        let line = |path: &str| {
            SpecError::near(Path::new("e.toml"), text, path, "m")
                .location
                .map(|l| l.line)
        };
        assert_eq!(line("finetune.batch_size"), Some(8));
        assert_eq!(line("pretrain.batch_size"), Some(4));
        assert_eq!(line("networks.finetune.batch_size"), Some(10));
        assert_eq!(line("description"), Some(2));
        // Not set in its table: the table's header.
        assert_eq!(line("finetune.patience"), Some(6));
    }

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
