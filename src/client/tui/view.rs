//! Drawing: the message pane on top, the status line, and the input line at the bottom.
//!
//! The only place that knows colours; the state says what each piece of text is.

use super::app::App;
use super::pane::{Piece, Tone};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// What the input line starts with.
const PROMPT: &str = "> ";

/// How each kind of text looks.
fn style(tone: Tone) -> Style {
    match tone {
        Tone::Time => Style::new().fg(Color::DarkGray),
        Tone::Name => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        Tone::Own => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        Tone::Text => Style::new(),
        Tone::Server => Style::new().fg(Color::Yellow),
        Tone::Error => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Tone::Direct => Style::new().fg(Color::Magenta),
        Tone::Info => Style::new().fg(Color::Blue),
    }
}

fn line(row: Vec<Piece>) -> Line<'static> {
    Line::from(
        row.into_iter()
            .map(|p| Span::styled(p.text, style(p.tone)))
            .collect::<Vec<_>>(),
    )
}

/// Draws the whole screen. Takes the state mutably because the pane and the input learn the
/// size they are drawn at here, which is what makes resizing work.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let [pane, status, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    app.pane
        .resize(usize::from(pane.width), usize::from(pane.height));
    let rows: Vec<Line> = app.pane.visible().into_iter().map(line).collect();
    frame.render_widget(Paragraph::new(rows), pane);

    draw_status(frame, app, status);

    let prompt = PROMPT.len() as u16;
    let room = usize::from(input.width.saturating_sub(prompt));
    let (shown, cursor) = app.input.window(room);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(PROMPT, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(shown),
        ])),
        input,
    );
    let x = input.x + prompt + u16::try_from(cursor).unwrap_or(u16::MAX);
    frame.set_cursor_position((x.min(input.right().saturating_sub(1)), input.y));
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let bar = Style::new().fg(Color::Black).bg(Color::Gray);
    let (left, right) = app.status();
    // The hint gives way when the facts need the whole line.
    let (left_cols, right_cols) = (Line::from(left.as_str()).width(), right.len());
    let right_cols = if left_cols + right_cols <= usize::from(area.width) {
        u16::try_from(right_cols).unwrap_or(0)
    } else {
        0
    };
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_cols)]).areas(area);
    frame.render_widget(Paragraph::new(left).style(bar), left_area);
    frame.render_widget(Paragraph::new(right).style(bar), right_area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{self, chat_message::Kind};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen(app: &mut App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect()
    }

    fn msg(kind: Kind, time: u64, from: &str, text: &str) -> pb::ChatMessage {
        pb::ChatMessage {
            timestamp: time,
            username: from.into(),
            message: text.into(),
            kind: kind as i32,
            sender_id: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_screen_has_the_pane_the_status_and_the_input() {
        let mut app = App::new("127.0.0.1:8080", "alice");
        app.joined();
        app.set_lamport(7);
        app.on_message(&msg(Kind::Message, 6, "bob", "hello alice"));
        app.input.insert_str("typing");
        let rows = screen(&mut app, 80, 5);
        assert!(rows[0].starts_with("Connecting to 127.0.0.1:8080 as alice"));
        assert!(rows[1].starts_with("[L6] bob: hello alice"), "{rows:?}");
        assert!(
            rows[3].starts_with(" 127.0.0.1:8080 | connected | alice | L7"),
            "{rows:?}"
        );
        assert!(rows[3].trim_end().ends_with("Esc quits"), "{rows:?}");
        assert!(rows[4].starts_with("> typing "), "{rows:?}");
    }

    #[test]
    fn the_hint_gives_way_to_the_facts_on_a_narrow_status_line() {
        let mut app = App::new("a-rather-long-host-name.example:8080", "alice");
        let rows = screen(&mut app, 50, 4);
        assert_eq!(
            rows[2],
            " a-rather-long-host-name.example:8080 | connecting"
        );
    }

    #[test]
    fn the_cursor_sits_where_the_input_is_edited() {
        let mut app = App::new("h:1", "alice");
        app.input.insert_str("héllo");
        app.input.left();
        let mut terminal = Terminal::new(TestBackend::new(30, 4)).unwrap();
        terminal.draw(|f| draw(f, &mut app)).unwrap();
        terminal.backend_mut().assert_cursor_position((2 + 4, 3));
    }

    #[test]
    fn long_lines_wrap_and_a_resize_rewraps_them() {
        let mut app = App::new("h:1", "alice");
        app.on_message(&msg(Kind::Message, 3, "bob", &"x".repeat(30)));
        let narrow = screen(&mut app, 20, 8);
        let at = narrow.iter().position(|r| r.starts_with("[L3]")).unwrap();
        assert_eq!(
            narrow[at..at + 3],
            [
                "[L3] bob:           ",
                &"x".repeat(20),
                "xxxxxxxxxx          "
            ]
        );
        let wide = screen(&mut app, 80, 8);
        assert_eq!(wide[1].trim_end(), format!("[L3] bob: {}", "x".repeat(30)));
    }
}
