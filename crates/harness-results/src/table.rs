//! The one Markdown table writer of the report: a header of named, aligned columns, then one
//! line per row, then a blank line.

use std::fmt::Write as _;

/// How a column's cells line up: text to the left, numbers to the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table being filled row by row.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: AsRef<str>>(columns: &[(S, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, align)| (name.as_ref().to_string(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.columns.len(),
            "a row of {} cells in a table of {} columns",
            cells.len(),
            self.columns.len()
        );
        self.rows.push(cells);
    }

    /// The header, the alignment line, every row and a blank line, appended to `md`.
    pub fn write(&self, md: &mut String) {
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let cells: Vec<&str> = cells.collect();
            format!("| {} |", cells.join(" | "))
        };
        let _ = writeln!(
            md,
            "{}",
            line(&mut self.columns.iter().map(|(n, _)| n.as_str()))
        );
        let _ = writeln!(
            md,
            "{}",
            line(&mut self.columns.iter().map(|(_, a)| match a {
                Align::Left => "---",
                Align::Right => "---:",
            }))
        );
        for row in &self.rows {
            let _ = writeln!(md, "{}", line(&mut row.iter().map(String::as_str)));
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_its_header_alignment_rows_and_a_blank_line() {
        let mut t = Table::new(&[("arm", Align::Left), ("accuracy %", Align::Right)]);
        t.row(vec!["scratch".into(), "51.2".into()]);
        t.row(vec!["fashion-mnist".into(), "57.7".into()]);
        let mut md = String::new();
        t.write(&mut md);
        assert_eq!(
            md,
            "| arm | accuracy % |\n| --- | ---: |\n| scratch | 51.2 |\n| fashion-mnist | 57.7 |\n\n"
        );
    }

    #[test]
    #[should_panic(expected = "a row of 1 cells in a table of 2 columns")]
    fn a_row_of_the_wrong_width_is_refused() {
        Table::new(&[("a", Align::Left), ("b", Align::Left)]).row(vec!["x".into()]);
    }
}
