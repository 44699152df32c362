use std::convert::Infallible;

use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::Terminal;

use super::{Clamped, MAX_COLUMNS, MAX_ROWS};

/// A terminal that says it is as large as a winsize can say, and draws nothing.
struct Huge;

impl Backend for Huge {
    type Error = Infallible;

    fn draw<'a, I>(&mut self, _: I) -> Result<(), Infallible>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        Ok(())
    }
    fn hide_cursor(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn show_cursor(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn get_cursor_position(&mut self) -> Result<Position, Infallible> {
        Ok(Position::new(0, 0))
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, _: P) -> Result<(), Infallible> {
        Ok(())
    }
    fn clear(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn clear_region(&mut self, _: ClearType) -> Result<(), Infallible> {
        Ok(())
    }
    fn size(&self) -> Result<Size, Infallible> {
        Ok(Size::new(u16::MAX, u16::MAX))
    }
    fn window_size(&mut self) -> Result<WindowSize, Infallible> {
        Ok(WindowSize {
            columns_rows: Size::new(u16::MAX, u16::MAX),
            pixels: Size::new(0, 0),
        })
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// `stty rows 65535 cols 65535` made `herd top` allocate two 65535x65535 buffers (206 GB) and
/// abort with the terminal left raw; it now draws within the clamp.
#[test]
fn a_terminal_of_65535_by_65535_is_drawn_within_the_clamp() {
    let mut terminal = Terminal::new(Clamped(Huge)).unwrap();
    let frame = terminal
        .draw(|frame| assert_eq!(frame.area().as_size(), Size::new(MAX_COLUMNS, MAX_ROWS)))
        .unwrap();
    assert_eq!(frame.area.as_size(), Size::new(MAX_COLUMNS, MAX_ROWS));
    let size = terminal.backend_mut().window_size().unwrap();
    assert_eq!(size.columns_rows, Size::new(MAX_COLUMNS, MAX_ROWS));
}

/// A small terminal keeps its size.
#[test]
fn a_terminal_within_the_clamp_keeps_its_size() {
    let backend = ratatui::backend::TestBackend::new(80, 24);
    let terminal = Terminal::new(Clamped(backend)).unwrap();
    assert_eq!(terminal.size().unwrap(), Size::new(80, 24));
}

/// A pseudo-terminal no one gave a size says 0x0: `herd top` draws 80x24 there, not nothing.
#[test]
fn a_terminal_of_no_size_is_drawn_at_80_by_24() {
    assert_eq!(super::clamp(Size::new(0, 0)), super::UNKNOWN_SIZE);
    assert_eq!(super::clamp(Size::new(100, 0)), Size::new(100, 24));
    assert_eq!(super::clamp(Size::new(0, 30)), Size::new(80, 30));
}
