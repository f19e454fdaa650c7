//! No function of the workspace runs over 80 lines unless a `// Long:` comment right above it
//! says why: a long function is read, reviewed and changed as several things at once.
//!
//! A function is measured from its `fn` line to the first later line that is its indentation
//! followed by `}`, both counted (rustfmt's layout makes that the function's closing brace).

use std::fs;
use std::path::{Path, PathBuf};

/// The most lines a function may have without a stated reason.
const LIMIT: usize = 80;

/// A function over the limit, as the scanner finds it.
#[derive(Debug, PartialEq, Eq)]
struct LongFn {
    name: String,
    /// The 1-based line of its `fn`.
    line: usize,
    /// Lines from its `fn` line to its closing brace, both counted.
    length: usize,
    /// Whether a `// Long:` comment above it says why it is long.
    explained: bool,
}

/// Every function of `text` longer than `limit` lines.
fn long_functions(text: &str, limit: usize) -> Vec<LongFn> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_line(line) else {
            continue;
        };
        let closing = format!("{indent}}}");
        let Some(end) = (i + 1..lines.len()).find(|&j| lines[j] == closing) else {
            continue;
        };
        let length = end - i + 1;
        if length > limit {
            out.push(LongFn {
                name: name.to_string(),
                line: i + 1,
                length,
                explained: explained(&lines[..i]),
            });
        }
    }
    out
}

/// The indentation and the name of a line that opens a function: optional `pub` or
/// `pub(…)`, `async`, `const` and `unsafe`, in that order, then `fn NAME`.
fn fn_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start();
    let indent = &line[..line.len() - rest.len()];
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix("pub") {
        let after = match after.strip_prefix('(') {
            Some(inside) => &inside[inside.find(')')? + 1..],
            None => after,
        };
        rest = keyword_gap(after)?;
    }
    for keyword in ["async", "const", "unsafe"] {
        if let Some(after) = rest.strip_prefix(keyword).and_then(keyword_gap) {
            rest = after;
        }
    }
    let rest = keyword_gap(rest.strip_prefix("fn")?)?;
    let name_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (name_len > 0).then(|| (indent, &rest[..name_len]))
}

/// `text` after the whitespace that must follow a keyword; none when there is none.
fn keyword_gap(text: &str) -> Option<&str> {
    let rest = text.trim_start();
    (rest.len() < text.len()).then_some(rest)
}

/// Whether the comments and attributes right above a function (the end of `above`) include
/// a line starting with `// Long:`.
fn explained(above: &[&str]) -> bool {
    for line in above.iter().rev() {
        let line = line.trim_start();
        if line.starts_with("// Long:") {
            return true;
        }
        if !(line.starts_with("//") || line.starts_with("#[") || line.starts_with("#![")) {
            return false;
        }
    }
    false
}

/// The workspace's Rust sources: `crates/*/src/**/*.rs`, `crates/*/tests/*.rs` and
/// `tests/*.rs`, sorted.
fn workspace_sources(root: &Path) -> Vec<PathBuf> {
    let mut files = rust_files(&root.join("tests"), false);
    for krate in entries(&root.join("crates")) {
        files.extend(rust_files(&krate.join("src"), true));
        files.extend(rust_files(&krate.join("tests"), false));
    }
    files.sort();
    files
}

/// The `.rs` files of `dir`, and with `deep` of its sub-folders too.
fn rust_files(dir: &Path, deep: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in entries(dir) {
        if path.is_dir() {
            if deep {
                files.extend(rust_files(&path, true));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The entries of `dir`; none when it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read.map(|entry| entry.unwrap().path()).collect()
}

#[test]
fn every_function_over_80_lines_says_why_it_is_long() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sources = workspace_sources(&root);
    assert!(
        sources.len() > 20,
        "found only {} source files under {}",
        sources.len(),
        root.display()
    );
    let mut unexplained = Vec::new();
    for path in &sources {
        let text = fs::read_to_string(path).unwrap();
        let shown = path.strip_prefix(&root).unwrap_or(path).display();
        for f in long_functions(&text, LIMIT) {
            if !f.explained {
                unexplained.push(format!(
                    "{shown}:{} {} ({} lines)",
                    f.line, f.name, f.length
                ));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "{} functions are over {LIMIT} lines with no `// Long:` comment above them saying why; \
         split them along their concerns, or say why they are best long:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}

/// Made-up source: a short function, one of exactly the limit, and a long one preceded by
/// `comment` (then a doc comment and an attribute). Built line by line so that this file
/// holds no long function itself.
fn made_up_source(comment: &str) -> String {
    let mut text = String::from("pub(crate) fn short() {\n    let a = 1;\n}\n\n");
    text.push_str("impl Made {\n    pub const unsafe fn at_the_limit() {\n");
    for i in 0..78 {
        text.push_str(&format!("        let a{i} = {i};\n"));
    }
    text.push_str("    }\n}\n\n");
    text.push_str(comment);
    text.push_str("/// A doc line.\n#[allow(unused)]\nfn long_one(x: u8) -> u8 {\n");
    for i in 0..90 {
        text.push_str(&format!("    let b{i} = {i};\n"));
    }
    text.push_str("    x\n}\n");
    text
}

#[test]
fn the_scanner_reports_only_functions_over_the_limit_and_honours_a_long_comment() {
    let unexplained = long_functions(&made_up_source(""), LIMIT);
    assert_eq!(
        unexplained,
        [LongFn {
            name: "long_one".into(),
            line: 90,
            length: 93,
            explained: false,
        }]
    );
    let explained = long_functions(
        &made_up_source("// Long: a flat table of made-up data.\n"),
        LIMIT,
    );
    assert_eq!(explained.len(), 1);
    assert_eq!(explained[0].name, "long_one");
    assert!(explained[0].explained);
    // A `// Long:` comment above something else exempts nothing.
    let elsewhere = made_up_source("// Long: about the line below.\nconst C: u8 = 0;\n");
    assert!(!long_functions(&elsewhere, LIMIT)[0].explained);
}

#[test]
fn the_scanner_reads_fn_lines_as_fnlen_py_does() {
    assert_eq!(fn_line("fn a() {"), Some(("", "a")));
    assert_eq!(fn_line("    pub fn run_cell("), Some(("    ", "run_cell")));
    assert_eq!(fn_line("pub(crate) async fn b()"), Some(("", "b")));
    assert_eq!(fn_line("  const unsafe fn c_2()"), Some(("  ", "c_2")));
    assert_eq!(fn_line("let f = fn_name();"), None);
    assert_eq!(fn_line("// fn commented() {"), None);
    assert_eq!(fn_line("pubfn d()"), None);
}
