use super::*;

/// A worker's row as a crash-looping pool shows it at 80 columns.
fn row(pid: &str, state: &str) -> Row {
    let cells = ["6", pid, "1", state, "0.5%", "13.6 MiB", "12", "17s"];
    Row {
        cells: cells.map(String::from),
        healthy: false,
    }
}

fn names(columns: &Columns) -> Vec<&'static str> {
    columns
        .shown
        .iter()
        .map(|&(c, _)| Model::HEADER[c])
        .collect()
}

#[test]
fn every_column_shows_whole_when_it_fits() {
    let rows = [row("24166", "ready"), row("24169", "restarting in 4s")];
    let rows: Vec<&Row> = rows.iter().collect();
    let all = [
        (0, 4),
        (1, 5),
        (2, 3),
        (3, 16),
        (4, 4),
        (5, 8),
        (6, 8),
        (7, 6),
    ];
    let wide = fit(&rows, 78);
    assert_eq!((wide.shown.as_slice(), wide.spacing), (all.as_slice(), 2));
    // Closer columns before any is left out.
    let close = fit(&rows, 61);
    assert_eq!((close.shown.as_slice(), close.spacing), (all.as_slice(), 1));
}

/// Narrow terminals cut PIDs 24166 and 24169 both to `2416`, MEM to `13`, UPTIME to `17`,
/// and padded STATE: columns now go whole, MEM first, and SLOT, PID and STATE stay.
#[test]
fn a_narrow_table_leaves_columns_out_whole_and_never_cuts_a_number() {
    let rows = [row("24166", "ready"), row("24169", "restarting in 4s")];
    let rows: Vec<&Row> = rows.iter().collect();
    let at = |width| names(&fit(&rows, width));
    assert_eq!(
        at(58),
        ["SLOT", "PID", "GEN", "STATE", "CPU", "RESTARTS", "UPTIME"]
    );
    assert_eq!(
        at(48),
        ["SLOT", "PID", "GEN", "STATE", "RESTARTS", "UPTIME"]
    );
    assert_eq!(at(46), ["SLOT", "PID", "STATE", "RESTARTS", "UPTIME"]);
    assert_eq!(at(38), ["SLOT", "PID", "STATE", "UPTIME"]);
    assert_eq!(at(28), ["SLOT", "PID", "STATE"]);
    for width in [10, 20, 28, 38, 46, 48, 58, 78, 200] {
        let columns = fit(&rows, width);
        let spacing = columns.spacing;
        let used = columns
            .shown
            .iter()
            .map(|&(_, w)| w + spacing)
            .sum::<usize>()
            - spacing;
        for &(c, w) in &columns.shown {
            let widest = rows.iter().map(|r| r.cells[c].len()).max().unwrap();
            let whole = w >= widest.max(Model::HEADER[c].len());
            assert!(c == STATE || whole, "{} cut at {width}", Model::HEADER[c]);
        }
        assert!(used <= width || width < 12, "{used} > {width}");
    }
    // Only STATE is shortened, when even SLOT, PID and STATE do not fit.
    assert_eq!(fit(&rows, 20).shown, [(0, 4), (1, 5), (3, 9)]);
}

#[test]
fn the_state_column_keeps_no_more_room_than_its_text() {
    let rows = [row("7", "ready")];
    let rows: Vec<&Row> = rows.iter().collect();
    assert_eq!(fit(&rows, 200).shown[3], (3, 5));
}

#[test]
fn an_ellipsis_ends_a_state_that_is_cut() {
    assert_eq!(ellipsis("restarting in 4s", 16), "restarting in 4s");
    assert_eq!(ellipsis("restarting in 4s", 9), "restarti…");
    assert_eq!(ellipsis("ready", 1), "…");
    assert_eq!(ellipsis("ready", 0), "");
}
