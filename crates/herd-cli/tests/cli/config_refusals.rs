//! Config files `herd upgrade --reload-config` used to accept and could not apply: einhorn's
//! convention turned on by a reload.

use std::path::Path;

use crate::config::{hello_config, pids};
use crate::util::*;

/// einhorn's convention turned on by a reload: the new workers got `EINHORN_FDS` but no
/// `EINHORN_SOCK_PATH`, since herd binds that socket only as it starts, so an einhorn worker
/// that acknowledges had nowhere to. Refused in one line, with what to do instead; turning it
/// off likewise; Server::Starter's, which needs nothing of herd's, reaches the new workers.
#[test]
fn a_reload_that_turns_einhorn_on_is_refused_and_server_starter_is_not() {
    let config = std::sync::OnceLock::new();
    let herd = Herd::start_with(|dir| {
        let path = hello_config(dir, "", "v1");
        config.set(path.clone()).unwrap();
        let mut cmd = herd_json();
        cmd.args(["run", "--config", &path]);
        cmd
    });
    let config = config.get().unwrap();
    let before = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, format!("compat = [\"einhorn\"]\n{text}")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "herd.toml: cannot reload: compat \"einhorn\" changed, whose acknowledgement socket \
             (EINHORN_SOCK_PATH) herd binds, or not, as it starts: restart herd, or start a new \
             herd with --takeover; nothing was changed (config_invalid)"
        ),
        "{stderr}"
    );
    let after = herd.status();
    assert_eq!(after["generation"], 1, "{after}");
    assert_eq!(pids(&after), pids(&before));
    std::fs::write(config, format!("compat = [\"server-starter\"]\n{text}")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    let after = wait_status(&herd, "2 ready workers of generation 2", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    let linux = Path::new("/proc/self/environ").exists();
    for pid in pids(&after).into_iter().filter(|_| linux) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(environ.contains("SERVER_STARTER_PORT=127.0.0.1:"), "{pid}");
        assert!(!environ.contains("EINHORN_"), "{pid}");
    }
}
