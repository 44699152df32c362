use super::*;

fn row(slot: usize, healthy: bool) -> Row {
    let mut cells = [(); 8].map(|_| "-".to_string());
    cells[0] = slot.to_string();
    Row { cells, healthy }
}

fn slots(rows: &[&Row]) -> Vec<String> {
    rows.iter().map(|r| r.cells[0].clone()).collect()
}

/// The table, the sockets and the events at `rest` lines with `rows` workers and a socket.
fn of(rest: u16, rows: usize) -> (u16, u16, u16) {
    let h = heights(rest, rows, 1);
    assert_eq!(h.table + h.sockets + h.events, rest);
    (h.table, h.sockets, h.events)
}

#[test]
fn heights_give_the_workers_then_the_sockets_then_the_events_then_the_rest() {
    assert_eq!(of(0, 3), (0, 0, 0));
    assert_eq!(of(8, 3), (8, 0, 0));
    assert_eq!(of(9, 3), (6, 3, 0));
    assert_eq!(of(13, 3), (6, 3, 4));
    assert_eq!(of(11, 3), (8, 3, 0));
    assert_eq!(of(19, 3), (6, 3, 10));
    assert_eq!(of(33, 0), (20, 3, 10));
    // 80x24, 8 workers: the table got 6 of them and the events 8 lines.
    assert_eq!(of(22, 8), (11, 3, 8));
    assert_eq!(of(16, 8), (13, 3, 0));
    assert_eq!(of(17, 8), (11, 3, 3));
    assert_eq!(of(30, 100), (30, 0, 0));
    assert_eq!(of(30, usize::MAX), (30, 0, 0));
    // Many sockets take what the table leaves.
    let h = heights(20, 8, 20);
    assert_eq!((h.table, h.sockets, h.events), (11, 9, 0));
}

#[test]
fn rows_in_trouble_are_kept_before_healthy_ones_and_the_rest_counted() {
    let rows: Vec<Row> = (0..8).map(|slot| row(slot, slot < 6)).collect();
    let (kept, left_out) = shown(&rows, 8);
    assert_eq!((kept.len(), left_out.len()), (8, 0));
    // 5 lines: 4 rows (slots 6 and 7 first, then the first healthy), the count last.
    let (kept, left_out) = shown(&rows, 5);
    assert_eq!(slots(&kept), ["0", "1", "6", "7"]);
    assert_eq!(slots(&left_out), ["2", "3", "4", "5"]);
    assert_eq!(more(&left_out), "+4 more (not shown, all ready)");
    let (kept, left_out) = shown(&rows, 2);
    assert_eq!(slots(&kept), ["6"]);
    assert_eq!(
        more(&left_out),
        "+7 more (not shown, 1 of them not ready or paused)"
    );
    let (kept, left_out) = shown(&rows, 0);
    assert!(kept.is_empty() && left_out.len() == 8);
}

#[test]
fn wrapping_breaks_at_spaces_and_ends_in_an_ellipsis_when_cut() {
    let title = "herd 'web' pid 9: 6 of 8 ready (degraded)";
    assert_eq!(wrap(title, 80, 3), [title]);
    assert_eq!(
        wrap(title, 20, 3),
        ["herd 'web' pid 9: 6", "of 8 ready", "(degraded)"]
    );
    assert_eq!(wrap(title, 20, 2), ["herd 'web' pid 9: 6", "of 8 ready…"]);
    assert_eq!(wrap("abcdefgh ij", 3, 9), ["abc", "def", "gh", "ij"]);
    assert_eq!(wrap("", 10, 3), [""]);
    assert_eq!(wrap("+/- scale   q quit", 20, 3), ["+/- scale   q quit"]);
    assert_eq!(wrap("a b", 0, 3), ["a", "b"]);
}

/// A narrow terminal wraps each event rather than cutting its end (where a pid and its fix
/// are), the newest first, as many as fit (a wrapped event's spaces collapse).
#[test]
fn events_wrap_newest_first_as_many_as_fit() {
    let events = [
        "2s ago  WARN  worker 42 is paused: kill -CONT 42 resumes it".to_string(),
        "5s ago  INFO  worker ready".to_string(),
        "9s ago  INFO  herd starting".to_string(),
    ];
    let lines = event_lines(&events, 30, 4);
    assert_eq!(
        lines,
        [
            "2s ago WARN worker 42 is",
            "paused: kill -CONT 42 resumes",
            "it",
            "5s ago  INFO  worker ready",
        ]
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 30));
    // The last that fits is cut with an ellipsis.
    assert_eq!(
        event_lines(&events, 30, 2),
        ["2s ago WARN worker 42 is", "paused: kill -CONT 42 resumes…"]
    );
    assert!(event_lines(&events, 30, 0).is_empty());
    assert_eq!(
        event_lines(&events, 200, 8).len(),
        3,
        "one line each when wide"
    );
}
