//! `include = ["image.toml", …]`: an experiment file takes its settings tables from others, so
//! that a setting shared by several experiments is written once.
//!
//! Each file is parsed on its own, so an error inside an included file names that file and its
//! line. The settings are merged as leaves (`pretrain.audio.epochs`), each remembering the file
//! whose value it holds; an error about a setting then points at the file that set it.
//!
//! The rules: included files are read in order, each with its own includes beneath it; the
//! including file overrides any leaf it sets itself; two included files that give one leaf
//! different values are an error unless the including file sets that leaf; a value that is not
//! a table (an array too) is one leaf, replaced whole and never concatenated; only the tables of
//! [`INHERITED_TABLES`] are lent.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use toml::{Spanned, Table, Value};

use crate::error::SpecError;

/// The tables an included file lends. Its `name`, `description`, `[matrix]` and
/// `[[hypothesis]]` belong to its own experiment and are never inherited.
pub const INHERITED_TABLES: [&str; 5] = ["model", "pretrain", "finetune", "text", "networks"];

/// A file read for an experiment: the experiment file itself, or one it includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// The settings of an experiment file merged over those of the files it includes.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The tables of [`INHERITED_TABLES`] after every include and override.
    pub settings: Table,
    /// Every file read, the experiment file first.
    pub files: Vec<SourceFile>,
    /// `table.key` → the index in `files` of the file whose value it holds.
    pub origins: BTreeMap<String, usize>,
}

/// Reads a file's text as the schema of experiment files and returns its `include` list; an
/// error names that file and line.
pub(crate) type CheckFile<'a> = &'a dyn Fn(&Path, &str) -> Result<Vec<Spanned<String>>, SpecError>;

/// Merges the settings of the experiment file `path` (text `text`, whose `include` list is
/// `includes`) over those of the files it includes, read from disk relative to its folder.
pub(crate) fn resolve(
    path: &Path,
    text: &str,
    includes: &[Spanned<String>],
    check: CheckFile,
) -> Result<Resolved, SpecError> {
    let mut loader = Loader {
        files: vec![SourceFile {
            path: path.to_path_buf(),
            text: text.to_string(),
        }],
        stack: vec![(canonical(path), 0)],
        check,
    };
    let layer = loader.layer(0, includes)?;
    let origins = layer
        .0
        .iter()
        .map(|(key, (_, file))| (key.join("."), *file))
        .collect();
    Ok(Resolved {
        settings: layer.into_table(),
        files: loader.files,
        origins,
    })
}

/// A key path such as `["pretrain", "audio", "epochs"]`.
type KeyPath = Vec<String>;

/// Settings as leaves (any value but a non-empty table), each with the index of its file.
#[derive(Debug, Default)]
struct Layer(BTreeMap<KeyPath, (Value, usize)>);

/// Two included files that give one leaf different values.
struct Conflict {
    key: KeyPath,
    first: (Value, usize),
    second: (Value, usize),
}

impl Layer {
    /// The inherited tables of `file`'s own text (already checked against the schema).
    fn of_file(index: usize, file: &SourceFile) -> Result<Layer, SpecError> {
        let table: Table = toml::from_str(&file.text)
            .map_err(|e| SpecError::from_toml(&file.path, &file.text, &e))?;
        let mut layer = Layer::default();
        for name in INHERITED_TABLES {
            if let Some(value) = table.get(name) {
                layer.add(vec![name.to_string()], value, index);
            }
        }
        Ok(layer)
    }

    fn add(&mut self, key: KeyPath, value: &Value, file: usize) {
        match value {
            Value::Table(table) if !table.is_empty() => {
                for (name, value) in table {
                    let mut inner = key.clone();
                    inner.push(name.clone());
                    self.add(inner, value, file);
                }
            }
            _ => {
                self.0.insert(key, (value.clone(), file));
            }
        }
    }

    /// Adds the leaves of a sibling include; a leaf both set to different values is a conflict.
    fn merge_sibling(&mut self, other: Layer, conflicts: &mut Vec<Conflict>) {
        for (key, second) in other.0 {
            match self.0.get(&key) {
                Some(first) if first.0 != second.0 => conflicts.push(Conflict {
                    key,
                    first: first.clone(),
                    second,
                }),
                Some(_) => {}
                None => {
                    self.0.insert(key, second);
                }
            }
        }
    }

    /// Lays `own` over these leaves: every leaf it sets wins.
    fn overlay(&mut self, own: Layer) {
        self.0.extend(own.0);
    }

    /// The leaves as nested tables again.
    fn into_table(self) -> Table {
        let mut root = Table::new();
        // Sorted: a table's own (empty) leaf comes before the leaves inside it.
        for (key, (value, _)) in self.0 {
            let (last, parents) = key.split_last().expect("a key path is never empty");
            let mut table = &mut root;
            for name in parents {
                table = table
                    .entry(name.clone())
                    .or_insert_with(|| Value::Table(Table::new()))
                    .as_table_mut()
                    .expect("the schema makes a settings table hold tables");
            }
            if !table.get(last).is_some_and(Value::is_table) {
                table.insert(last.clone(), value);
            }
        }
        root
    }
}

/// The files read so far and the chain of includes being followed.
struct Loader<'a> {
    files: Vec<SourceFile>,
    /// (canonical path, index in `files`) of each file being resolved, outermost first: an
    /// include that returns to one of them is a cycle.
    stack: Vec<(PathBuf, usize)>,
    check: CheckFile<'a>,
}

impl Loader<'_> {
    /// The settings of file `index` laid over those of the files it includes (`includes`).
    fn layer(&mut self, index: usize, includes: &[Spanned<String>]) -> Result<Layer, SpecError> {
        let mut below = Layer::default();
        let mut conflicts = Vec::new();
        for include in includes {
            let (child, canonical) = self.read(index, include)?;
            let file = &self.files[child];
            let child_includes = (self.check)(&file.path, &file.text)?;
            self.stack.push((canonical, child));
            let layer = self.layer(child, &child_includes)?;
            self.stack.pop();
            below.merge_sibling(layer, &mut conflicts);
        }
        let own = Layer::of_file(index, &self.files[index])?;
        if let Some(conflict) = conflicts.into_iter().find(|c| !own.0.contains_key(&c.key)) {
            return Err(self.conflict_error(index, conflict));
        }
        below.overlay(own);
        Ok(below)
    }

    /// Reads the file that `include` (an entry of file `index`'s list) names; refuses a missing
    /// file and a cycle at the entry's line.
    fn read(
        &mut self,
        index: usize,
        include: &Spanned<String>,
    ) -> Result<(usize, PathBuf), SpecError> {
        let including = &self.files[index];
        let folder = including.path.parent().unwrap_or(Path::new(""));
        let path = folder.join(include.get_ref());
        let at = |message: String| {
            SpecError::at(&including.path, &including.text, include.span(), message)
        };
        let text = fs::read_to_string(&path).map_err(|e| {
            at(format!(
                "cannot read the included file {}: {e}",
                path.display()
            ))
            .with_help("`include` paths are relative to the folder of the file that includes them")
        })?;
        let canonical = canonical(&path);
        if let Some(at_stack) = self.stack.iter().position(|(p, _)| *p == canonical) {
            let chain: Vec<String> = self.stack[at_stack..]
                .iter()
                .map(|(_, i)| self.files[*i].path.display().to_string())
                .chain([path.display().to_string()])
                .collect();
            return Err(at(format!(
                "`include` makes a cycle: {}",
                chain.join(" includes ")
            ))
            .with_help("a file cannot include itself, directly or through the files it includes"));
        }
        self.files.push(SourceFile { path, text });
        Ok((self.files.len() - 1, canonical))
    }

    /// The error for two included files of file `index` that disagree on a leaf.
    fn conflict_error(&self, index: usize, c: Conflict) -> SpecError {
        let key = c.key.join(".");
        let (first, second) = (&self.files[c.first.1], &self.files[c.second.1]);
        let first_line = SpecError::near(&first.path, &first.text, &key, "")
            .location
            .map_or(String::new(), |l| format!(":{}", l.line));
        let including = self.files[index].path.display();
        SpecError::near(
            &second.path,
            &second.text,
            &key,
            format!(
                "`{key}` is {} here but {} in {}{first_line}; {including} includes both files and does not set `{key}` itself",
                c.second.0,
                c.first.0,
                first.path.display(),
            ),
        )
        .with_help(format!(
            "set `{key}` in {including} to choose, or keep such a setting where only one source uses it (e.g. [pretrain.audio])"
        ))
    }
}

/// The path with links and `..` resolved, so that one file is recognised under any name; as
/// given when it cannot be resolved (a file that is not on disk).
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
