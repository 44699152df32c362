//! More real servers under herd, beyond Python: Go with coreos/go-systemd's `activation`
//! package, and Bun. Each runs unmodified with 2 workers: answers come from 2 processes, a
//! `herd upgrade` under load loses no connection, and a stop is clean.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::interop_python::{interop_file, serve_with, stops_cleanly, upgrades_under_load};
use crate::util::*;

/// `tests/interop/go_systemd/server.go` built against Debian's go-systemd in GOPATH mode
/// (nothing is downloaded), cached beside the herd binary until the source changes.
fn go_systemd_server() -> PathBuf {
    let source = interop_file("go_systemd/server.go");
    let binary = Path::new(HERD)
        .parent()
        .unwrap()
        .join("interop/go-systemd-server");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&binary) > modified(Path::new(&source)) {
        return binary;
    }
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env_remove("GOFLAGS")
        .output()
        .expect("go is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "go build (golang-github-coreos-go-systemd-dev is installed by scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

#[test]
fn go_with_go_systemd_activation() {
    let server = go_systemd_server().display().to_string();
    let herd = serve_with(&[], &[&server], &[], "go-systemd pid");
    upgrades_under_load(&herd, |b| b.starts_with("go-systemd pid"));
    stops_cleanly(herd);
}

/// Bun from the npm package `bun`, which scripts/setup.sh installs pinned into
/// `$XDG_CACHE_HOME/herd/npm` (else `~/.cache/herd/npm`); `HERD_BUN` overrides.
fn bun() -> String {
    if let Some(bun) = std::env::var_os("HERD_BUN") {
        return bun.to_string_lossy().into_owned();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cache"));
    let bun = cache.join("herd/npm/node_modules/.bin/bun");
    assert!(
        bun.exists(),
        "{} is missing: run scripts/setup.sh",
        bun.display()
    );
    bun.display().to_string()
}

#[test]
fn bun_node_net_on_fd_3() {
    let herd = serve_with(&[], &[&bun(), &interop_file("bun_net.js")], &[], "bun pid");
    upgrades_under_load(&herd, |b| b.starts_with("bun pid"));
    stops_cleanly(herd);
}

/// Bun's `node:http` ignores `listen({ fd })` and binds a port of its own (oven-sh/bun#22559):
/// the server says where it listens, and it is not herd's socket.
#[test]
fn bun_node_http_ignores_the_fd() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        &bun(),
        &interop_file("bun_http.js"),
    ]);
    let ours = herd.address("http");
    let ours_port = ours.rsplit(':').next().unwrap();
    let line = herd.wait_text("bun_http.js listening on");
    let theirs: serde_json::Value =
        serde_json::from_str(line.split_once(" on ").unwrap().1).unwrap();
    assert_ne!(theirs["port"].to_string(), ours_port, "{line}");
    assert_eq!(theirs["address"], "::", "{line}");
}
