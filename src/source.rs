//! The inventory's text, and the mapping from byte offsets to lines and columns.

use std::ops::Range;

/// A region of the source text, in bytes. Always on `char` boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// An empty span at `offset`: for errors that point between nodes.
    pub const fn at(offset: usize) -> Self {
        Self::new(offset, offset)
    }
}

/// One inventory file: the name it is shown under and its text.
#[derive(Debug)]
pub struct Source {
    name: String,
    text: String,
    /// Byte offset at which each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

/// A 1-based line and a 1-based column counted in characters, as editors show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        // A byte order mark is no column of line 1.
        let first = if text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        let line_starts = std::iter::once(first)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The name diagnostics use for this file: the path as the user gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The 0-based index of the line holding byte `offset`.
    fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = self.clamp(offset);
        let line = self.line_index(offset);
        let column = self.text[self.line_starts[line]..offset].chars().count() + 1;
        LineCol {
            line: line + 1,
            column,
        }
    }

    /// The byte offset of a 1-based line and character column; past-the-end
    /// positions clamp to the end of the line or of the text.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let line_text = &self.text[self.line_range(start)];
        start
            + line_text
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(line_text.len(), |(i, _)| i)
    }

    /// The byte offset `chars` characters after `offset`, clamped to the text.
    pub fn advance_chars(&self, offset: usize, chars: usize) -> usize {
        let offset = self.clamp(offset);
        offset
            + self.text[offset..]
                .char_indices()
                .nth(chars)
                .map_or(self.text.len() - offset, |(i, _)| i)
    }

    /// The text of the line holding byte `offset`, without its line break.
    pub fn line_text(&self, offset: usize) -> &str {
        let start = self.line_starts[self.line_index(self.clamp(offset))];
        &self.text[self.line_range(start)]
    }

    fn line_range(&self, start: usize) -> Range<usize> {
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let end = if self.text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        start..end
    }

    /// The nearest `char` boundary at or before `offset`, inside the text.
    fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len()).max(self.line_starts[0]);
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_no_column() {
        let source = Source::new("f", "\u{feff}ab: x\ny\n");
        let at = source.line_col("\u{feff}ab: ".len());
        assert_eq!((at.line, at.column), (1, 5));
        assert_eq!(source.line_text(0), "ab: x");
        assert_eq!(source.offset_of(1, 1), 3);
    }

    #[test]
    fn offsets_map_to_lines_and_character_columns() {
        let source = Source::new("x.yaml", "a: 1\nnäme: x\r\nlast");
        assert_eq!(source.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(source.line_col(5), LineCol { line: 2, column: 1 });
        // `ä` is two bytes but one column.
        let x = source.text().find('x').unwrap();
        assert_eq!(source.line_col(x), LineCol { line: 2, column: 7 });
        assert_eq!(source.offset_of(2, 7), x);
        assert_eq!(source.line_text(x), "näme: x");
        assert_eq!(source.line_text(source.text().len()), "last");
        assert_eq!(source.advance_chars(5, 3), 9);
        assert_eq!(source.offset_of(99, 1), source.text().len());
    }
}
