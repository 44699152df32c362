use super::*;

fn press(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_scale_quit_and_ask_for_an_upgrade() {
    assert_eq!(key(press(KeyCode::Char('+')), false), Key::Scale(1));
    assert_eq!(key(press(KeyCode::Char('-')), false), Key::Scale(-1));
    assert_eq!(key(press(KeyCode::Char('q')), false), Key::Quit);
    assert_eq!(key(press(KeyCode::Char('u')), false), Key::AskUpgrade);
    assert_eq!(key(press(KeyCode::Char('y')), false), Key::Ignored);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(key(ctrl_c, false), Key::Quit);
    assert_eq!(key(ctrl_c, true), Key::Quit);
}

#[test]
fn an_upgrade_starts_only_on_y_after_u() {
    assert_eq!(key(press(KeyCode::Char('y')), true), Key::Upgrade);
    assert_eq!(key(press(KeyCode::Char('q')), true), Key::Cancel);
    assert_eq!(key(press(KeyCode::Char('+')), true), Key::Cancel);
    let mut release = press(KeyCode::Char('y'));
    release.kind = KeyEventKind::Release;
    assert_eq!(key(release, true), Key::Ignored);
}

/// Esc quits, whether it came alone (crossterm takes an Esc at the end of what one read gave
/// as Esc) or not; Esc and `u` read together are Alt-u, which still asks for an upgrade.
#[test]
fn escape_quits_and_an_alt_key_is_its_key() {
    assert_eq!(key(press(KeyCode::Esc), false), Key::Quit);
    assert_eq!(key(press(KeyCode::Esc), true), Key::Cancel);
    let alt_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::ALT);
    assert_eq!(key(alt_u, false), Key::AskUpgrade);
}
