//! How `herd top` draws its model: the title, the workers, each socket's queue with its
//! sparkline, autoscaling, recent events, and the keys (or the question asked).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::model::{Model, SocketLine, EVENTS};

/// The keys, as the last line shows them.
const KEYS: &str = "+/- scale   u upgrade   q quit";

/// Draws `model` over the whole frame.
pub fn draw(frame: &mut Frame, model: &Model) {
    let workers = model.workers();
    let sockets = model.sockets();
    let autoscale = model.autoscale();
    let fixed = 1 + (sockets.len() as u16 + 2) + u16::from(autoscale.is_some()) + 1;
    let (table_height, events_height) =
        heights(frame.area().height.saturating_sub(fixed), workers.len());
    let [title, table, queues, scaling, events, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_height),
        Constraint::Length(sockets.len() as u16 + 2),
        Constraint::Length(u16::from(autoscale.is_some())),
        Constraint::Length(events_height),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let (text, degraded) = model.title();
    let color = if degraded {
        Color::Yellow
    } else {
        Color::Green
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    frame.render_widget(Paragraph::new(text).style(bold.fg(color)), title);
    draw_workers(frame, table, &workers);
    draw_sockets(frame, queues, &sockets);
    if let Some(line) = autoscale {
        frame.render_widget(Paragraph::new(line), scaling);
    }
    let lines: Vec<Line> = model.events().into_iter().map(Line::from).collect();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" recent events ");
    frame.render_widget(Paragraph::new(lines).block(block), events);
    let note = model.note.as_deref().unwrap_or(KEYS);
    frame.render_widget(
        Paragraph::new(note).style(Style::default().fg(Color::Cyan)),
        footer,
    );
}

/// How the `rest` of the lines (after the title, sockets, autoscaling and keys) is shared by
/// the workers' table and the recent events: the table's first few worker rows come first, then
/// the events (up to [`EVENTS`], none when fewer than one fits), and the table takes what is
/// left. Each box has two borders; the table a header too.
fn heights(rest: u16, workers: usize) -> (u16, u16) {
    let first_rows = workers.min(4) as u16;
    let table = (3 + first_rows).min(rest);
    let events = (EVENTS as u16 + 2).min(rest - table);
    let events = if events < 3 { 0 } else { events };
    (rest - events, events)
}

/// The workers' table.
fn draw_workers(frame: &mut Frame, area: Rect, workers: &[super::model::Row]) {
    let widths = [
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(4),
        Constraint::Min(12),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(8),
    ];
    let header = Row::new(Model::HEADER).style(Style::default().add_modifier(Modifier::BOLD));
    let rows = workers.iter().map(|r| Row::new(r.clone()));
    let block = Block::default().borders(Borders::ALL).title(" workers ");
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// One line per socket: its name, address and queue, then the queue's last minute.
fn draw_sockets(frame: &mut Frame, area: Rect, sockets: &[SocketLine]) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" sockets: accept queue, last minute ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::vertical(sockets.iter().map(|_| Constraint::Length(1))).split(inner);
    for (socket, row) in sockets.iter().zip(rows.iter()) {
        // The text whole first (a narrow terminal cut it at 40%), the sparkline the rest.
        let width = (socket.text.chars().count() as u16).saturating_add(1);
        let [text, spark] =
            Layout::horizontal([Constraint::Length(width), Constraint::Min(0)]).areas(*row);
        frame.render_widget(Paragraph::new(socket.text.as_str()), text);
        let top = socket.history.iter().copied().max().unwrap_or(0).max(1);
        let line = Sparkline::default()
            .data(&socket.history)
            .max(top)
            .style(Style::default().fg(Color::Magenta));
        frame.render_widget(line, spark);
    }
}

#[cfg(test)]
mod tests;
