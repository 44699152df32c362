//! Tests that need their process to themselves (no other test's threads, children or fds).

/// Whether the calling test runs alone in a process of its own: if not, the test binary runs
/// again for that test alone (`module`: the test's `module_path!()`, `name`: its function),
/// which must pass (and run), and the caller returns.
pub(crate) fn alone(module: &str, name: &str) -> bool {
    const ALONE: &str = "HERD_SYS_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let path = module.split_once("::").map_or("", |(_, path)| path);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{path}::{name}"), "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains(" 1 passed"),
        "{name}, alone in its process: {}\n{stdout}\n{stderr}",
        out.status
    );
    false
}
