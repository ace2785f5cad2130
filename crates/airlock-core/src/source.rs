//! Source files as the user wrote them, and the mapping between byte offsets and
//! 1-based line/column positions that every diagnostic needs.

/// Index of a file inside a [`crate::ProjectFiles`] set.
pub type FileId = usize;

/// Stands for "no file" in a diagnostic about the project as a whole.
pub const NO_FILE: FileId = usize::MAX;

/// One file of a project, with its path relative to the project root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the project root, with `/` separators (`workflows/order-intake.yaml`).
    pub path: String,
    /// The file's full text.
    pub text: String,
}

impl SourceFile {
    /// A file from its relative path and text.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset. Offsets past the end
    /// are clamped to the end of the text.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = clamp_to_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// Byte offset of a 1-based line and character column; `None` when the position
    /// lies outside the text.
    pub fn offset_of(&self, line: usize, column: usize) -> Option<usize> {
        let mut line_start = 0;
        for _ in 1..line {
            line_start += self.text[line_start..].find('\n')? + 1;
        }
        let rest = &self.text[line_start..];
        let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let mut chars = line_text.char_indices();
        let within = match chars.nth(column.saturating_sub(1)) {
            Some((i, _)) => i,
            None if line_text.chars().count() + 1 == column => line_text.len(),
            None => return None,
        };
        Some(line_start + within)
    }

    /// The text of the 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        self.text.split('\n').nth(line.checked_sub(1)?)
    }
}

fn clamp_to_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_and_offset_round_trip_with_multibyte_characters() {
        let file = SourceFile::new("a.yaml", "a: 1\nb: \"héllo\" x\n");
        let offset = file.text.find('x').unwrap();
        assert_eq!(file.line_col(offset), (2, 12));
        assert_eq!(file.offset_of(2, 12), Some(offset));
        assert_eq!(file.offset_of(9, 1), None);
        assert_eq!(file.line_text(2), Some("b: \"héllo\" x"));
    }
}
