use super::*;

/// A TCP listener on loopback, as the old herd would have handed it over, named `name`.
fn inherited(name: &str) -> (Inherited, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let socket = Inherited {
        name: name.to_string(),
        kind: Some(SocketKind::Tcp),
        address: address.to_string(),
        fd: OwnedSocket::from(listener),
        file: None,
        from_store: false,
    };
    (socket, address)
}

fn spec(text: &str) -> BindSpec {
    text.parse().unwrap()
}

#[test]
fn a_spec_takes_the_socket_of_its_name_else_of_its_address() {
    let (web, web_at) = inherited("web");
    let (api, api_at) = inherited("api");
    let mut all = vec![web, api];
    let by_address = take_matching(&spec(&api_at.to_string()), &mut all).unwrap();
    assert_eq!(by_address.map(|s| s.name).as_deref(), Some("api"));
    let by_name = take_matching(&spec(&format!("web={web_at}")), &mut all).unwrap();
    assert_eq!(by_name.map(|s| s.name).as_deref(), Some("web"));
    assert!(all.is_empty());
    assert!(take_matching(&spec("127.0.0.1:1"), &mut all)
        .unwrap()
        .is_none());
}

#[test]
fn a_name_that_moves_its_address_is_refused() {
    let (web, _) = inherited("web");
    let mut all = vec![web];
    let error = take_matching(&spec("web=127.0.0.2:1"), &mut all).unwrap_err();
    assert!(
        error.to_string().contains("must keep its address"),
        "{error}"
    );
}

#[test]
fn any_port_and_any_address_match_what_is_bound() {
    let at = |text: &str| text.parse::<SocketAddr>().unwrap();
    let host_port = |text: &str| match spec(text).address {
        Address::Tcp(hp) => hp,
        other => panic!("{other:?}"),
    };
    assert!(matches_ip(&host_port("127.0.0.1:0"), at("127.0.0.1:8080")));
    assert!(!matches_ip(
        &host_port("127.0.0.1:81"),
        at("127.0.0.1:8080")
    ));
    assert!(matches_ip(&host_port(":8080"), at("[::]:8080")));
    assert!(!matches_ip(&host_port(":8080"), at("127.0.0.1:8080")));
}

#[test]
fn a_stored_socket_whose_name_moved_its_address_is_replaced_not_refused() {
    let (mut web, _) = inherited("web");
    web.from_store = true;
    let (api, api_at) = inherited("api");
    let mut all = vec![web, api];
    assert!(take_matching(&spec("web=127.0.0.2:1"), &mut all)
        .unwrap()
        .is_none());
    let by_address = take_matching(&spec(&format!("web={api_at}")), &mut all).unwrap();
    assert_eq!(by_address.map(|s| s.name).as_deref(), Some("api"));
    assert!(all.is_empty());
}

/// A Unix socket is the same socket however the two herds spell its path: the old herd's may
/// be relative to its own directory, the new one's relative to another.
#[cfg(unix)]
#[test]
fn a_unix_path_spelled_otherwise_takes_the_same_socket() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let path = dir.path().join("app.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let socket = |file| Inherited {
        name: "app".to_string(),
        kind: Some(SocketKind::Unix),
        address: "unix:app.sock".to_string(),
        fd: OwnedSocket::from(listener.try_clone().unwrap()),
        file,
        from_store: false,
    };
    let elsewhere = spec(&format!("unix:{}/sub/../app.sock", dir.path().display()));
    let known = Some((path.clone(), meta.dev(), meta.ino()));
    assert!(take_matching(&elsewhere, &mut vec![socket(known)])
        .unwrap()
        .is_some());
    // Where the kernel tells the file a socket is bound to (Linux), its word, not the old
    // herd's, decides.
    let another = Some((path.clone(), meta.dev(), meta.ino() + 1));
    let taken = take_matching(&elsewhere, &mut vec![socket(another)]).unwrap();
    assert_eq!(taken.is_some(), cfg!(target_os = "linux"));
    // The old herd's relative text names another file from this directory (none here).
    let relative = spec("unix:app.sock");
    assert!(take_matching(&relative, &mut vec![socket(None)])
        .unwrap()
        .is_none());
    let _other = std::os::unix::net::UnixListener::bind(dir.path().join("other.sock")).unwrap();
    let other = spec(&format!("unix:{}/sub/../other.sock", dir.path().display()));
    assert!(take_matching(&other, &mut vec![socket(None)])
        .unwrap()
        .is_none());
}
