use std::collections::BTreeMap;

use super::*;

#[test]
fn the_store_is_on_with_fdstore_or_the_flag_and_needs_notify_socket() {
    let on = |max| Some(Setting { max });
    assert_eq!(setting(None, false, true), Ok((None, None)));
    assert_eq!(setting(None, true, true), Ok((on(None), None)));
    assert_eq!(setting(Some("4"), false, true), Ok((on(Some(4)), None)));
    assert_eq!(setting(Some("4"), false, false), Ok((None, None)));
    let no_systemd = setting(None, true, false).unwrap_err();
    assert!(
        no_systemd.starts_with("--fdstore needs systemd"),
        "{no_systemd}"
    );
    let (off, warning) = setting(Some("0"), true, true).unwrap();
    assert_eq!(off, None);
    assert!(warning.unwrap().contains("set FileDescriptorStoreMax="));
    let (off, warning) = setting(Some("many"), false, true).unwrap();
    assert_eq!(off, None);
    let warning = warning.unwrap();
    assert!(
        warning.starts_with("FDSTORE=\"many\" is not a number"),
        "{warning}"
    );
    let (on_anyway, warning) = setting(Some("-1"), true, true).unwrap();
    assert_eq!(on_anyway, on(None));
    assert!(warning.unwrap().contains("--fdstore stores"));
}

#[test]
fn names_systemd_would_refuse() {
    assert_eq!(fdname_problem("herd.http"), None);
    assert_eq!(fdname_problem(""), None);
    assert!(fdname_problem("a:b").unwrap().contains("':'"));
    assert!(fdname_problem("a\tb").is_some());
    assert!(fdname_problem("é").is_some());
    assert_eq!(fdname_problem(&"x".repeat(255)), None);
    assert!(fdname_problem(&"x".repeat(256)).unwrap().contains("255"));
}

#[test]
fn the_plan_stores_in_order_up_to_the_maximum() {
    let long = "x".repeat(251);
    let names = [(0, "http"), (2, long.as_str()), (3, "cache"), (4, "admin")];
    let (store, warnings) = plan(&names, None);
    let fdnames: Vec<(usize, &str)> = store.iter().map(|(i, n)| (*i, n.as_str())).collect();
    assert_eq!(
        fdnames,
        [(0, "herd.http"), (3, "herd.cache"), (4, "herd.admin")]
    );
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("rename it"), "{}", warnings[0]);

    let (store, warnings) = plan(&names[..1], Some(1));
    assert_eq!((store.len(), warnings.len()), (1, 0));
    let (store, warnings) = plan(&[(0, "http"), (1, "cache"), (2, "admin")], Some(1));
    assert_eq!(store, [(0, "herd.http".to_string())]);
    assert_eq!(
        warnings,
        [
            "systemd's fd store holds at most 1 fds (FileDescriptorStoreMax=1), and herd has 3: \
          herd.cache, herd.admin not stored, so they close when herd restarts; raise \
          FileDescriptorStoreMax= to 3"
        ]
    );
}

#[test]
fn changes_remove_what_is_gone_or_replaced_and_store_what_is_new() {
    let map = |items: &[(&str, (u64, u64))]| -> BTreeMap<String, (u64, u64)> {
        items.iter().map(|(n, id)| (n.to_string(), *id)).collect()
    };
    let before = map(&[("herd.a", (1, 1)), ("herd.b", (1, 2)), ("herd.c", (1, 3))]);
    let now = map(&[("herd.a", (1, 1)), ("herd.b", (1, 9)), ("herd.d", (1, 4))]);
    let (remove, store) = changes(&before, &now);
    assert_eq!(remove, ["herd.b", "herd.c"]);
    assert_eq!(store, ["herd.b", "herd.d"]);
    assert_eq!(changes(&now, &now), (vec![], vec![]));
}

#[test]
fn a_send_that_failed_leaves_the_store_as_it_was_for_the_next_sync() {
    let map = |items: &[(&str, (u64, u64))]| -> BTreeMap<String, (u64, u64)> {
        items.iter().map(|(n, id)| (n.to_string(), *id)).collect()
    };
    let before = map(&[("herd.a", (1, 1)), ("herd.b", (1, 2)), ("herd.c", (1, 3))]);
    let now = map(&[("herd.a", (1, 1)), ("herd.b", (1, 9)), ("herd.d", (1, 4))]);
    let names = |list: &[&str]| -> Vec<String> { list.iter().map(|n| n.to_string()).collect() };
    // Every send failed: nothing changed, so the next sync removes and stores the same again.
    let stored = stored_after(&before, &now, &[], &[]);
    assert_eq!(stored, before);
    assert_eq!(changes(&stored, &now), changes(&before, &now));
    // Removing herd.b and storing herd.d went; removing herd.c and storing herd.b failed.
    let stored = stored_after(&before, &now, &names(&["herd.b"]), &names(&["herd.d"]));
    assert_eq!(
        stored,
        map(&[("herd.a", (1, 1)), ("herd.c", (1, 3)), ("herd.d", (1, 4))])
    );
    assert_eq!(
        changes(&stored, &now),
        (names(&["herd.c"]), names(&["herd.b"]))
    );
    // Everything went: the store is `now`.
    let all = stored_after(
        &before,
        &now,
        &names(&["herd.b", "herd.c"]),
        &names(&["herd.b", "herd.d"]),
    );
    assert_eq!(all, now);
}
