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
