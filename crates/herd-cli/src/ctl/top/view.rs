//! How `herd top` draws its model: the title, the workers, each socket's queue with its
//! sparkline, autoscaling, recent events, and the keys (or the question asked).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::model::{Model, SocketLine};
use columns::{ellipsis, fit, STATE};
use layout::{event_lines, heights, more, shown, wrap};

mod columns;
mod layout;

/// The keys, as the last line shows them.
const KEYS: &str = "+/- scale   u upgrade   q quit";

/// The most lines the title, the autoscaling line and the keys' line each wrap to.
const MOST_LINES: usize = 3;

/// Draws `model` over the whole frame.
pub fn draw(frame: &mut Frame, model: &Model) {
    let width = usize::from(frame.area().width);
    let workers = model.workers();
    let sockets = model.sockets();
    let (title_text, degraded) = model.title();
    let title_lines = wrap(&title_text, width, MOST_LINES);
    let autoscale_lines = (model.autoscale()).map_or(Vec::new(), |a| wrap(&a, width, MOST_LINES));
    let note = wrap(model.note.as_deref().unwrap_or(KEYS), width, MOST_LINES);
    let [title_height, autoscale_height, note_height] =
        [&title_lines, &autoscale_lines, &note].map(|lines| lines.len() as u16);
    let fixed = title_height + autoscale_height + note_height;
    let rest = frame.area().height.saturating_sub(fixed);
    let heights = heights(rest, workers.len(), sockets.len());
    let [title, table, queues, scaling, events, footer] = Layout::vertical([
        Constraint::Length(title_height),
        Constraint::Length(heights.table),
        Constraint::Length(heights.sockets),
        Constraint::Length(autoscale_height),
        Constraint::Length(heights.events),
        Constraint::Length(note_height),
    ])
    .areas(frame.area());
    let color = if degraded {
        Color::Yellow
    } else {
        Color::Green
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    frame.render_widget(text(title_lines).style(bold.fg(color)), title);
    draw_workers(frame, table, &workers);
    draw_sockets(frame, queues, &sockets);
    frame.render_widget(text(autoscale_lines), scaling);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" recent events ");
    let inner = block.inner(events);
    let room = (usize::from(inner.width), usize::from(inner.height));
    let lines = event_lines(&model.events(), room.0, room.1);
    frame.render_widget(text(lines).block(block), events);
    let cyan = Style::default().fg(Color::Cyan);
    frame.render_widget(text(note).style(cyan), footer);
}

/// Lines already wrapped, as a paragraph.
fn text(lines: Vec<String>) -> Paragraph<'static> {
    Paragraph::new(lines.into_iter().map(Line::from).collect::<Vec<_>>())
}

/// The workers' table: the columns that fit its width, the rows that fit its height, and a
/// last line counting those left out.
fn draw_workers(frame: &mut Frame, area: Rect, workers: &[super::model::Row]) {
    let block = Block::default().borders(Borders::ALL).title(" workers ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let room = usize::from(inner.height.saturating_sub(1));
    let (rows, left_out) = shown(workers, room);
    let columns = fit(&rows, usize::from(inner.width));
    let line = |texts: [&str; 8]| {
        let cells = columns.shown.iter().map(|&(c, width)| match c {
            STATE => ellipsis(texts[c], width),
            _ => texts[c].to_string(),
        });
        Row::new(cells.collect::<Vec<_>>())
    };
    let header = line(Model::HEADER).style(Style::default().add_modifier(Modifier::BOLD));
    let body = rows
        .iter()
        .map(|row| line(row.cells.each_ref().map(String::as_str)));
    let widths = (columns.shown.iter()).map(|&(_, width)| Constraint::Length(width as u16));
    let table = Table::new(body, widths).header(header);
    frame.render_widget(table.column_spacing(columns.spacing as u16), inner);
    if !left_out.is_empty() && room > 0 {
        let last = Rect {
            y: inner.bottom() - 1,
            height: 1,
            ..inner
        };
        frame.render_widget(Paragraph::new(more(&left_out)), last);
    }
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
