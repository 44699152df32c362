//! What each key does in `herd top`.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Leave `herd top` (`q`, Esc, Ctrl-C).
    Quit,
    /// Scale by this many workers (`+`, `-`).
    Scale(i64),
    /// Ask whether to start a rolling upgrade (`u`).
    AskUpgrade,
    /// Yes, start it (`y`, after `u`).
    Upgrade,
    /// No upgrade after all (any other key after `u`).
    Cancel,
    /// Nothing.
    Ignored,
}

/// What `key` asks for; `asked` says an upgrade awaits its confirmation.
pub fn key(event: KeyEvent, asked: bool) -> Key {
    if event.kind == KeyEventKind::Release {
        return Key::Ignored;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    match event.code {
        KeyCode::Char('c') if ctrl => Key::Quit,
        KeyCode::Char('y') if asked => Key::Upgrade,
        _ if asked => Key::Cancel,
        KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
        KeyCode::Char('+') | KeyCode::Char('=') => Key::Scale(1),
        KeyCode::Char('-') | KeyCode::Char('_') => Key::Scale(-1),
        KeyCode::Char('u') => Key::AskUpgrade,
        _ => Key::Ignored,
    }
}

#[cfg(test)]
mod tests;
