//! The input line: the text being typed, its cursor, and the history of sent lines.
//!
//! The cursor moves by Unicode scalar values, never inside one, so editing multi-byte text is
//! safe; what the line shows is measured in terminal columns, so wide characters fit.

use std::collections::VecDeque;
use unicode_width::UnicodeWidthChar;

/// How many sent lines Up and Down can recall.
pub const HISTORY: usize = 200;
/// The most characters the line holds (far above what the server accepts, 128; it refuses
/// longer messages itself and says why, but a paste cannot grow this without bound).
pub const MAX_CHARS: usize = 4096;

/// The line being edited.
#[derive(Debug, Default)]
pub struct Input {
    text: String,
    /// A byte offset into `text`, always on a character boundary.
    cursor: usize,
    /// Oldest first, at most [`HISTORY`].
    history: VecDeque<String>,
    /// Which history entry is shown while recalling, `None` while editing a fresh line.
    recalled: Option<usize>,
    /// The fresh line, kept while recalling so Down can come back to it.
    draft: String,
    /// The first character shown, in characters, when the line is wider than its space.
    scroll: usize,
}

impl Input {
    /// An empty line with no history.
    pub fn new() -> Input {
        Input::default()
    }

    /// The text as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, as a count of characters before it.
    pub fn cursor(&self) -> usize {
        self.text[..self.cursor].chars().count()
    }

    /// Types one character at the cursor. Control characters are ignored: they are keys, not
    /// text, and must never reach the server or a terminal.
    pub fn insert(&mut self, c: char) {
        if c.is_control() || self.text.chars().count() >= MAX_CHARS {
            return;
        }
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Types a whole string, character by character.
    pub fn insert_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.insert(c));
    }

    /// Pastes text: line breaks and tabs become spaces, so a pasted paragraph stays one line
    /// and its words stay apart.
    pub fn paste(&mut self, s: &str) {
        for c in s.replace("\r\n", "\n").chars() {
            self.insert(if c.is_whitespace() && c.is_control() {
                ' '
            } else {
                c
            });
        }
    }

    /// The byte offset of the character before the cursor.
    fn prev(&self) -> Option<usize> {
        self.text[..self.cursor]
            .char_indices()
            .last()
            .map(|(i, _)| i)
    }

    /// The byte offset just after the character at the cursor.
    fn next(&self) -> Option<usize> {
        self.text[self.cursor..]
            .chars()
            .next()
            .map(|c| self.cursor + c.len_utf8())
    }

    /// Backspace: removes the character before the cursor.
    pub fn backspace(&mut self) {
        if let Some(i) = self.prev() {
            self.text.replace_range(i..self.cursor, "");
            self.cursor = i;
        }
    }

    /// Delete: removes the character at the cursor.
    pub fn delete(&mut self) {
        if let Some(end) = self.next() {
            self.text.replace_range(self.cursor..end, "");
        }
    }

    /// Moves one character left.
    pub fn left(&mut self) {
        if let Some(i) = self.prev() {
            self.cursor = i;
        }
    }

    /// Moves one character right.
    pub fn right(&mut self) {
        if let Some(i) = self.next() {
            self.cursor = i;
        }
    }

    /// Moves to the start of the line.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves to the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Ctrl-U: removes everything before the cursor.
    pub fn cut_before(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Ctrl-K: removes everything from the cursor on.
    pub fn cut_after(&mut self) {
        self.text.truncate(self.cursor);
    }

    /// Ctrl-W: removes the word before the cursor and the spaces after it.
    pub fn cut_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Up: shows the previous sent line.
    pub fn recall_older(&mut self) {
        let at = match self.recalled {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.show_recalled(at);
    }

    /// Down: shows the next sent line, and after the newest the line that was being typed.
    pub fn recall_newer(&mut self) {
        match self.recalled {
            None => {}
            Some(i) if i + 1 < self.history.len() => self.show_recalled(i + 1),
            Some(_) => {
                self.recalled = None;
                self.text = std::mem::take(&mut self.draft);
                self.cursor = self.text.len();
            }
        }
    }

    fn show_recalled(&mut self, at: usize) {
        self.recalled = Some(at);
        self.text = self.history[at].clone();
        self.cursor = self.text.len();
    }

    /// Enter: empties the line and returns what it held, remembering it for Up unless it is
    /// blank or the same as the line before.
    pub fn submit(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.scroll = 0;
        self.recalled = None;
        self.draft.clear();
        if !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        line
    }

    /// What fits in `width` columns, and the cursor's column in it. The visible part follows
    /// the cursor: it scrolls only as far as needed to keep the cursor in view.
    pub fn window(&mut self, width: usize) -> (String, usize) {
        let width = width.max(1);
        let chars: Vec<char> = self.text.chars().collect();
        let cursor = self.cursor();
        let cols = |range: &[char]| range.iter().map(|&c| char_width(c)).sum::<usize>();
        self.scroll = self.scroll.min(cursor);
        // The cursor needs a column of its own after the text before it.
        while cols(&chars[self.scroll..cursor]) + 1 > width && self.scroll < cursor {
            self.scroll += 1;
        }
        let mut shown = String::new();
        let mut used = 0;
        for &c in &chars[self.scroll..] {
            if used + char_width(c) > width {
                break;
            }
            used += char_width(c);
            shown.push(c);
        }
        (shown, cols(&chars[self.scroll..cursor]))
    }
}

/// The columns a character takes on a terminal.
pub fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut input = Input::new();
        input.insert_str(s);
        input
    }

    #[test]
    fn typing_and_moving_over_multibyte_text() {
        let mut input = typed("héllo wörld");
        assert_eq!(input.cursor(), 11);
        for _ in 0..5 {
            input.left();
        }
        input.delete();
        input.insert('W');
        assert_eq!(input.text(), "héllo Wörld");
        input.home();
        input.insert_str("» ");
        assert_eq!(input.text(), "» héllo Wörld");
        input.right();
        input.right();
        input.backspace();
        assert_eq!(input.text(), "» hllo Wörld");
        input.end();
        input.backspace();
        assert_eq!(input.text(), "» hllo Wörl");
        assert_eq!(input.cursor(), 11);
    }

    #[test]
    fn edges_are_safe() {
        let mut input = Input::new();
        input.backspace();
        input.delete();
        input.left();
        input.right();
        assert_eq!((input.text(), input.cursor()), ("", 0));
        let mut input = typed("日本");
        input.right();
        input.delete();
        assert_eq!((input.text(), input.cursor()), ("日本", 2));
        input.home();
        input.left();
        input.backspace();
        assert_eq!((input.text(), input.cursor()), ("日本", 0));
    }

    #[test]
    fn control_characters_are_not_text() {
        let input = typed("a\u{1b}[2Jb\u{7}\tc\u{9b}");
        assert_eq!(input.text(), "a[2Jbc");
    }

    #[test]
    fn a_paste_stays_one_line() {
        let mut input = typed("say: ");
        input.paste("first line\r\nsecond\tcolumn\nthird\u{1b}[0m");
        assert_eq!(input.text(), "say: first line second column third[0m");
    }

    #[test]
    fn the_line_is_bounded() {
        let input = typed(&"x".repeat(MAX_CHARS + 10));
        assert_eq!(input.text().chars().count(), MAX_CHARS);
    }

    #[test]
    fn cutting() {
        let mut input = typed("one two  three");
        input.cut_word();
        assert_eq!(input.text(), "one two  ");
        input.cut_word();
        assert_eq!(input.text(), "one ");
        input.insert_str("deux trois");
        for _ in 0..6 {
            input.left();
        }
        input.cut_after();
        assert_eq!(input.text(), "one deux");
        input.left();
        input.cut_before();
        assert_eq!((input.text(), input.cursor()), ("x", 0));
    }

    #[test]
    fn history_recalls_sent_lines_and_returns_to_the_draft() {
        let mut input = Input::new();
        for line in ["first", "second", "second", "   ", "third"] {
            input.insert_str(line);
            input.submit();
        }
        input.insert_str("draft");
        input.recall_older();
        assert_eq!(input.text(), "third");
        input.recall_older();
        assert_eq!(input.text(), "second", "a repeated line is kept once");
        input.recall_older();
        assert_eq!(input.text(), "first");
        input.recall_older();
        assert_eq!(input.text(), "first", "stops at the oldest");
        input.recall_newer();
        input.recall_newer();
        assert_eq!(input.text(), "third");
        input.recall_newer();
        assert_eq!(input.text(), "draft");
        assert_eq!(input.cursor(), 5);
        input.recall_newer();
        assert_eq!(input.text(), "draft");
    }

    #[test]
    fn recalled_lines_can_be_edited_and_sent_without_changing_history() {
        let mut input = Input::new();
        input.insert_str("hello");
        input.submit();
        input.recall_older();
        input.insert('!');
        assert_eq!(input.submit(), "hello!");
        input.recall_older();
        assert_eq!(input.text(), "hello!");
        input.recall_older();
        assert_eq!(input.text(), "hello");
    }

    #[test]
    fn history_is_bounded() {
        let mut input = Input::new();
        for i in 0..HISTORY + 5 {
            input.insert_str(&i.to_string());
            input.submit();
        }
        for _ in 0..HISTORY + 5 {
            input.recall_older();
        }
        assert_eq!(input.text(), "5");
    }

    #[test]
    fn the_window_follows_the_cursor_in_columns() {
        let mut input = typed("short");
        assert_eq!(input.window(10), ("short".into(), 5));
        let mut input = typed("abcdefghij");
        // Ten characters and the cursor need eleven columns: the first one scrolls away.
        assert_eq!(input.window(10), ("bcdefghij".into(), 9));
        input.home();
        assert_eq!(input.window(10), ("abcdefghij".into(), 0));
        // Wide characters take two columns each.
        let mut input = typed("日本語です");
        assert_eq!(input.window(6), ("です".into(), 4));
        input.home();
        assert_eq!(input.window(6), ("日本語".into(), 0));
        input.right();
        assert_eq!(input.window(6), ("日本語".into(), 2));
    }
}
