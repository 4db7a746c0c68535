//! The message pane: what was said, wrapped to the terminal's width, and how far the person has
//! scrolled back.
//!
//! Entries say what each part of a line is (a [`Tone`]), not how it looks; the view picks the
//! colours. Scrolling counts screen rows up from the newest one, so it is exact whatever the
//! wrapping.

use super::input::char_width;
use std::collections::VecDeque;

/// The most entries kept; older ones are dropped (the client log keeps everything).
pub const KEEP: usize = 5000;

/// What a piece of a line is, which decides how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A Lamport time.
    Time,
    /// Another participant's name.
    Name,
    /// This participant's own name.
    Own,
    /// Chat text.
    Text,
    /// A SERVER notice for everyone (joins, leaves, announcements).
    Server,
    /// Something went wrong: the server refused input, or the connection ended.
    Error,
    /// A direct message, either way.
    Direct,
    /// The client's own remarks (help, command results).
    Info,
}

/// A run of text with one tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// How the text is meant.
    pub tone: Tone,
    /// The text; already free of control characters.
    pub text: String,
}

/// One line of the pane before wrapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The pieces, left to right.
    pub pieces: Vec<Piece>,
}

impl Entry {
    /// Adds a piece. Text must already be printable (see [`crate::client::printable`]).
    pub fn with(mut self, tone: Tone, text: impl Into<String>) -> Entry {
        self.pieces.push(Piece {
            tone,
            text: text.into(),
        });
        self
    }

    /// The entry as plain text, as a person reads it.
    pub fn text(&self) -> String {
        self.pieces.iter().map(|p| p.text.as_str()).collect()
    }

    /// Splits the entry into rows of at most `width` columns, between words where it can
    /// (the space stays at the end of the row) and inside a word only when it is wider than a
    /// row.
    pub fn wrap(&self, width: usize) -> Vec<Vec<Piece>> {
        let width = width.max(2);
        let chars: Vec<(char, Tone)> = self
            .pieces
            .iter()
            .flat_map(|p| p.text.chars().map(move |c| (c, p.tone)))
            .collect();
        let mut rows = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            if !rows.is_empty() && chars[start].0 == ' ' {
                // A space at a break is the break itself.
                start += 1;
                continue;
            }
            let mut used = 0;
            let mut end = start;
            while end < chars.len() && used + char_width(chars[end].0) <= width {
                used += char_width(chars[end].0);
                end += 1;
            }
            if end == start {
                // A character wider than the row: give it a row of its own.
                end += 1;
            } else if end < chars.len() {
                let space = chars[start..end].iter().rposition(|(c, _)| *c == ' ');
                if let Some(at) = space.filter(|&at| at > 0) {
                    end = start + at + 1;
                }
            }
            rows.push(pieces(&chars[start..end]));
            start = end;
        }
        if rows.is_empty() {
            rows.push(Vec::new());
        }
        rows
    }

    /// How many rows the entry takes at `width`.
    pub fn rows(&self, width: usize) -> usize {
        self.wrap(width).len()
    }
}

/// Groups a row's characters back into pieces of one tone each.
fn pieces(row: &[(char, Tone)]) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for &(c, tone) in row {
        match out.last_mut() {
            Some(last) if last.tone == tone => last.text.push(c),
            _ => out.push(Piece {
                tone,
                text: c.to_string(),
            }),
        }
    }
    out
}

/// The scrolling list of entries.
#[derive(Debug)]
pub struct Pane {
    entries: VecDeque<Entry>,
    /// Rows scrolled up from the newest; 0 follows new messages as they arrive.
    scroll: usize,
    width: usize,
    height: usize,
}

impl Default for Pane {
    fn default() -> Pane {
        Pane {
            entries: VecDeque::new(),
            scroll: 0,
            width: 80,
            height: 20,
        }
    }
}

impl Pane {
    /// An empty pane.
    pub fn new() -> Pane {
        Pane::default()
    }

    /// Tells the pane the size it is drawn at (on every draw, so resizing just works).
    pub fn resize(&mut self, width: usize, height: usize) {
        self.width = width.max(2);
        self.height = height.max(1);
        self.scroll = self.scroll.min(self.max_scroll());
    }

    /// Adds an entry at the bottom. A person reading back keeps their place: the view stays
    /// where it was instead of jumping to the new line.
    pub fn push(&mut self, entry: Entry) {
        if self.scroll > 0 {
            self.scroll += entry.rows(self.width);
        }
        self.entries.push_back(entry);
        if self.entries.len() > KEEP {
            self.entries.pop_front();
            self.scroll = self.scroll.min(self.max_scroll());
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Rows scrolled up from the newest.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    fn total_rows(&self) -> usize {
        self.entries.iter().map(|e| e.rows(self.width)).sum()
    }

    fn max_scroll(&self) -> usize {
        self.total_rows().saturating_sub(self.height)
    }

    /// How far a page moves: the height less one row, so one line stays in view for context.
    fn page(&self) -> usize {
        self.height.saturating_sub(1).max(1)
    }

    /// PageUp: one page back.
    pub fn page_up(&mut self) {
        self.scroll = (self.scroll + self.page()).min(self.max_scroll());
    }

    /// PageDown: one page forward, at most to the newest.
    pub fn page_down(&mut self) {
        self.scroll = self.scroll.saturating_sub(self.page());
    }

    /// Back to the newest line.
    pub fn to_bottom(&mut self) {
        self.scroll = 0;
    }

    /// The rows in view, top to bottom: at most `height`, the newest at the bottom unless
    /// scrolled; when everything fits, it starts at the top.
    pub fn visible(&self) -> Vec<Vec<Piece>> {
        let want = self.scroll + self.height;
        let mut rows: Vec<Vec<Piece>> = Vec::new();
        for entry in self.entries.iter().rev() {
            let mut wrapped = entry.wrap(self.width);
            wrapped.reverse();
            rows.extend(wrapped);
            if rows.len() >= want {
                break;
            }
        }
        rows.reverse();
        let end = rows.len().saturating_sub(self.scroll);
        let start = end.saturating_sub(self.height);
        rows.drain(start..end).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Entry {
        Entry::default().with(Tone::Text, text)
    }

    fn shown(pane: &Pane) -> Vec<String> {
        pane.visible()
            .iter()
            .map(|row| row.iter().map(|p| p.text.as_str()).collect())
            .collect()
    }

    fn numbered(pane: &mut Pane, range: std::ops::Range<usize>) {
        for i in range {
            pane.push(line(&format!("m{i}")));
        }
    }

    #[test]
    fn wrapping_keeps_tones_and_counts_columns() {
        let entry = Entry::default()
            .with(Tone::Time, "[L1] ")
            .with(Tone::Name, "bob")
            .with(Tone::Text, ": 日本語");
        let rows = entry.wrap(8);
        let text: Vec<String> = rows
            .iter()
            .map(|r| r.iter().map(|p| p.text.as_str()).collect())
            .collect();
        assert_eq!(text, ["[L1] ", "bob: ", "日本語"]);
        assert_eq!(rows[1][0].tone, Tone::Name);
        assert_eq!(rows[1][1].tone, Tone::Text);
        // A word wider than the row is cut, counting two columns per wide character.
        let cut: Vec<String> = line("日本語です")
            .wrap(5)
            .iter()
            .map(|r| r.iter().map(|p| p.text.as_str()).collect())
            .collect();
        assert_eq!(cut, ["日本", "語で", "す"]);
        assert_eq!(entry.rows(80), 1);
        assert_eq!(
            Entry::default().rows(10),
            1,
            "an empty entry still takes a row"
        );
    }

    #[test]
    fn wrapping_breaks_between_words_when_it_can() {
        let entry = line("the quick brown fox jumps");
        let text: Vec<String> = entry
            .wrap(11)
            .iter()
            .map(|r| r.iter().map(|p| p.text.as_str()).collect())
            .collect();
        assert_eq!(text, ["the quick ", "brown fox ", "jumps"]);
        assert_eq!(line("abcdefghij klm").rows(4), 4, "abcd efgh ij_ klm");
    }

    #[test]
    fn few_lines_start_at_the_top_and_many_show_the_newest() {
        let mut pane = Pane::new();
        pane.resize(20, 3);
        numbered(&mut pane, 0..2);
        assert_eq!(shown(&pane), ["m0", "m1"]);
        numbered(&mut pane, 2..5);
        assert_eq!(shown(&pane), ["m2", "m3", "m4"]);
    }

    #[test]
    fn paging_moves_by_a_page_less_one_and_stops_at_both_ends() {
        let mut pane = Pane::new();
        pane.resize(20, 3);
        numbered(&mut pane, 0..10);
        pane.page_up();
        assert_eq!(shown(&pane), ["m5", "m6", "m7"]);
        pane.page_up();
        pane.page_up();
        pane.page_up();
        assert_eq!(shown(&pane), ["m0", "m1", "m2"], "stops at the oldest");
        pane.page_down();
        assert_eq!(shown(&pane), ["m2", "m3", "m4"]);
        for _ in 0..5 {
            pane.page_down();
        }
        assert_eq!(shown(&pane), ["m7", "m8", "m9"], "stops at the newest");
        assert_eq!(pane.scroll(), 0);
    }

    #[test]
    fn reading_back_is_not_disturbed_by_new_messages() {
        let mut pane = Pane::new();
        pane.resize(4, 3);
        numbered(&mut pane, 0..10);
        pane.page_up();
        let before = shown(&pane);
        pane.push(line("a long one that wraps"));
        pane.push(line("m11"));
        assert_eq!(shown(&pane), before);
        pane.to_bottom();
        assert_eq!(shown(&pane), ["wrap", "s", "m11"]);
    }

    #[test]
    fn scrolling_counts_wrapped_rows() {
        let mut pane = Pane::new();
        pane.resize(5, 2);
        pane.push(line("aaaaabbbbbccccc"));
        pane.push(line("z"));
        assert_eq!(shown(&pane), ["ccccc", "z"]);
        pane.page_up();
        assert_eq!(shown(&pane), ["bbbbb", "ccccc"]);
        pane.page_up();
        pane.page_up();
        assert_eq!(shown(&pane), ["aaaaa", "bbbbb"]);
    }

    #[test]
    fn resizing_keeps_the_scroll_in_range() {
        let mut pane = Pane::new();
        pane.resize(10, 2);
        numbered(&mut pane, 0..6);
        for _ in 0..10 {
            pane.page_up();
        }
        assert_eq!(shown(&pane), ["m0", "m1"]);
        pane.resize(10, 10);
        assert_eq!(pane.scroll(), 0);
        assert_eq!(shown(&pane).len(), 6);
    }

    #[test]
    fn old_entries_are_dropped_beyond_the_bound() {
        let mut pane = Pane::new();
        numbered(&mut pane, 0..KEEP + 3);
        assert_eq!(pane.entries().count(), KEEP);
        assert_eq!(pane.entries().next().map(Entry::text), Some("m3".into()));
    }
}
