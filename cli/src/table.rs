//! Tables for people: aligned columns under upper-case headers, and
//! aligned `key  value` lists.

/// How a column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: headers, then rows of cells.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    max: Vec<usize>,
    min: Vec<usize>,
    rows: Vec<Vec<String>>,
}

/// The width of `s` in characters.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `max` characters, the last one an ellipsis when cut; control
/// characters (a user agent or a path may hold any) are shown as `?`.
fn fit(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if width(&clean) <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Table {
    /// A table with these columns, all left-aligned and uncut.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            align: vec![Align::Left; headers.len()],
            max: vec![usize::MAX; headers.len()],
            min: vec![0; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns column `i` to the right.
    pub fn right(mut self, i: usize) -> Table {
        self.align[i] = Align::Right;
        self
    }

    /// Cuts the cells of column `i` to `max` characters.
    pub fn max_width(mut self, i: usize, max: usize) -> Table {
        self.max[i] = max.max(1);
        self
    }

    /// Makes the columns at least this wide (a table printed in parts, as
    /// `events --follow` does, keeps its columns).
    pub fn min_widths(mut self, widths: &[usize]) -> Table {
        for (m, w) in self.min.iter_mut().zip(widths) {
            *m = *w;
        }
        self
    }

    /// Adds a row (missing cells are empty, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .zip(&self.max)
            .map(|(c, max)| fit(&c, *max))
            .collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, two spaces between columns,
    /// no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .zip(&self.min)
            .map(|(h, m)| width(h).max(*m))
            .collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i] - width(c);
                let last = i + 1 == n;
                match self.align[i] {
                    Align::Right => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(c);
                    }
                    Align::Left => {
                        out.push_str(c);
                        if !last {
                            out.push_str(&" ".repeat(pad));
                        }
                    }
                }
                if !last {
                    out.push_str("  ");
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            out
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let mut out = line(&headers);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// `key  value` lines, the values aligned.
pub fn pairs(items: &[(&str, String)]) -> String {
    let w = items.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in items {
        out.push_str(&format!("{k}{}  {v}", " ".repeat(w - width(k))));
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut t = Table::new(&["TARGET", "SOURCE", "HITS", "REASON"]).right(2);
        t.row(vec![
            "192.0.2.1".into(),
            "manual".into(),
            "7".into(),
            "scan".into(),
        ]);
        t.row(vec![
            "2001:db8:1:2::/64".into(),
            "auto".into(),
            "1234".into(),
            String::new(),
        ]);
        assert_eq!(
            t.render(),
            "TARGET             SOURCE  HITS  REASON\n\
             192.0.2.1          manual     7  scan\n\
             2001:db8:1:2::/64  auto    1234\n"
        );
    }

    #[test]
    fn long_cells_are_cut_and_controls_hidden() {
        let mut t = Table::new(&["A", "PATH"]).max_width(1, 8);
        t.row(vec!["x".into(), "/a/very/long/path".into()]);
        t.row(vec!["y".into(), "/\u{1b}[31m".into()]);
        t.row(vec!["z".into()]);
        assert_eq!(t.render(), "A  PATH\nx  /a/very…\ny  /?[31m\nz\n");
    }

    #[test]
    fn minimum_widths() {
        let mut t = Table::new(&["A", "B", "C"]).min_widths(&[4, 3]);
        t.row(vec!["x".into(), "y".into(), "z".into()]);
        assert_eq!(t.render(), "A     B    C\nx     y    z\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let mut t = Table::new(&["REASON", "N"]);
        t.row(vec!["héhé".into(), "1".into()]);
        assert_eq!(t.render(), "REASON  N\nhéhé    1\n");
    }

    #[test]
    fn pairs_are_aligned() {
        assert_eq!(
            pairs(&[
                ("version", "0.1.0".into()),
                ("blocks", "3".into()),
                ("x", String::new())
            ]),
            "version  0.1.0\nblocks   3\nx\n"
        );
    }
}
