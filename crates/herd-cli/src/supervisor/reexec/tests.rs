//! The re-exec state's format across versions, and finding the binary to run.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use herd_core::Epoch;

use super::super::platform::worker_exit;
use super::super::pool::{import, test_config, Action, Pool, Reason};
use super::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn the_invoked_path_is_made_absolute_or_found_in_path() {
    let cwd = Some(Path::new("/srv/app"));
    let all = |_: &Path| true;
    let path = |a: &str, var: Option<&str>, usable: &dyn Fn(&Path) -> bool| {
        invoked_path(OsStr::new(a), cwd, var.map(OsStr::new), usable)
    };
    assert_eq!(
        path("/opt/current/herd", None, &all),
        Some(PathBuf::from("/opt/current/herd")),
        "absolute: kept, symlinks too"
    );
    assert_eq!(
        path("./bin/herd", None, &all),
        Some(PathBuf::from("/srv/app/bin/herd"))
    );
    assert_eq!(
        path("../current/herd", None, &all),
        Some(PathBuf::from("/srv/app/../current/herd"))
    );
    // A bare name: the first directory of PATH that holds an executable of that name.
    let only_usr = |p: &Path| p == Path::new("/usr/bin/herd");
    assert_eq!(
        path("herd", Some("/nope:/usr/bin:/bin"), &only_usr),
        Some(PathBuf::from("/usr/bin/herd"))
    );
    assert_eq!(
        path("herd", Some(":/bin"), &all),
        Some(PathBuf::from("/srv/app/herd")),
        "an empty entry is the current directory"
    );
    // Unusable: the caller falls back to the running file.
    assert_eq!(path("herd", None, &all), None);
    assert_eq!(path("herd", Some("/bin"), &|_| false), None);
    assert_eq!(path("", Some("/bin"), &all), None);
    assert_eq!(path("./herd", None, &|_| false), None);
    assert_eq!(
        invoked_path(OsStr::new("./herd"), None, None, all),
        None,
        "relative, and herd's directory is unknown"
    );
}

/// The state a herd of the version before this one wrote (`herd reexec` at commit 0f912f0,
/// while a reuseport slot drained: version 2), byte for byte.
const PREVIOUS: &str = r#"{"uptime_ms":3050,"control":{"fd":3,"file":["/run/user/1000/herd/web.sock",25,1001]},"notify":{"fd":4,"file":["/run/user/1000/herd/web.notify",25,1002]},"listeners":[{"name":"http","kind":"tcp","address":"127.0.0.1:8080","fd":5,"file":null,"group":null}],"pool":{"desired":2,"generation":1,"latest_generation":1,"workers":[{"pid":100,"slot":0,"generation":1,"ready":true,"stopping":null,"draining":null,"age_ms":3050,"ping_age_ms":50,"ready_age_ms":50,"available":true,"status":null},{"pid":102,"slot":2,"generation":1,"ready":false,"stopping":["ScaleDown",4990,false],"draining":[10,1990],"age_ms":3050,"ping_age_ms":50,"ready_age_ms":50,"available":true,"status":null}],"slots":[{"failures":0,"restarts":0,"last_exit":null,"restart_in_ms":null},{"failures":2,"restarts":2,"last_exit":512,"restart_in_ms":50},{"failures":0,"restarts":0,"last_exit":null,"restart_in_ms":null}]},"attached":[{"pid":4242,"start_time":777,"age_ms":1500,"sockets":["http"],"pidfd":9,"group":true,"session":4000}],"service_ready":true,"reply_fd":8,"autoscale":{"bounds":[2,6],"last":[1200,3,"workers 95% busy"],"pressure":1,"idle_ms":null,"quiet_ms":300},"leftovers":[{"pgid":99,"slot":1,"whose":"worker","deadline_in_ms":4000,"leader":null,"known":[]}],"counters":{"restarts":2,"exits":[["exit",1],["signal",1],["stopped",0]],"upgrades":[["ok",1],["failed",0]],"autoscale":[["up",1],["down",0]],"sockets_restored":0},"metrics_fd":7,"nofile":[1024,524288]}"#;

/// The pool [`PREVIOUS`] saved, made again: 3 workers at `t0`; 3 s later, slot 1's worker
/// exits with code 1, its successor with code 2 (a backoff of 100 ms); 40 ms later, a scale
/// to 2 (slot 2 drains); saved 10 ms later. Returns the pool and when it was saved.
fn previous_pool() -> (Pool, Instant) {
    let drain = herd_core::DrainPolicy {
        settle: Duration::from_millis(250),
        limit: Duration::from_secs(2),
    };
    let config = test_config(3, Some(drain));
    let t0 = Instant::now();
    let mut pool = Pool::new(config);
    let mut next_pid = 100;
    let mut run = |pool: &mut Pool, actions: Vec<Action>, now| {
        for action in actions {
            if let Action::Spawn { slot, generation } = action {
                assert!(pool.spawned(slot, generation, next_pid, now));
                next_pid += 1;
            }
        }
    };
    let actions = pool.due(t0);
    run(&mut pool, actions, t0);
    let t1 = t0 + Duration::from_secs(3);
    let actions = pool.due(t1);
    run(&mut pool, actions, t1);
    for (pid, code) in [(101, 1), (103, 2)] {
        let exit = worker_exit(ExitStatus::from_raw(code << 8));
        let (_, actions) = pool.exited(pid, exit, t1).unwrap();
        run(&mut pool, actions, t1);
        let actions = pool.due(t1);
        run(&mut pool, actions, t1);
    }
    let t2 = t1 + Duration::from_millis(40);
    let actions = pool.scale(2, t2).unwrap();
    run(&mut pool, actions, t2);
    (pool, t2 + Duration::from_millis(10))
}

#[test]
fn the_previous_herds_state_decodes_to_the_same_pool() {
    let state: State = serde_json::from_str(PREVIOUS).unwrap();
    assert_eq!(state.version, OLDEST_STATE, "not written before");
    let (pool, saved_at) = previous_pool();
    let expected = pool.export(Epoch::at(saved_at)).unwrap();
    let without_bounds = PoolState {
        surge: None,
        ..expected.clone()
    };
    assert_eq!(
        state.cores.pool, without_bounds,
        "no surge bounds: the command line's decide"
    );
    // Continued 10 s later in the new image: the same pool, every time moved on with it.
    let resumed_at = Epoch::at(saved_at + Duration::from_secs(10));
    let cores = state.cores;
    let resumed = import(pool.config().clone(), cores.pool, resumed_at);
    assert_eq!(resumed.export(resumed_at), Some(expected));
    assert!(resumed.is_draining());
    let last_exit = resumed.slots()[1].last_exit.as_ref();
    assert_eq!(
        last_exit.map(|e| e.description.as_str()),
        Some("exit code 2")
    );
    assert_eq!(
        resumed.slots()[1].restart_at,
        Some(resumed_at.instant() + 50 * MS)
    );
    assert_eq!(cores.uptime_ms, Ago(3050));
    assert_eq!(cores.attached[0].age_ms, Ago(1500));
    let autoscale = cores.autoscale.unwrap().restore(resumed_at).unwrap();
    assert_eq!((autoscale.min, autoscale.max), (2, 6));
    assert_eq!(state.nofile, Some((1024, 524288)));
}

/// What this herd writes, the previous one reads: the same members, `version` besides.
#[test]
fn this_herd_writes_the_state_in_the_previous_herds_format() {
    let previous: serde_json::Value = serde_json::from_str(PREVIOUS).unwrap();
    let state: State = serde_json::from_str(PREVIOUS).unwrap();
    let mut written = serde_json::to_value(&state).unwrap();
    assert_eq!(written["version"], 1);
    written.as_object_mut().unwrap().remove("version");
    assert_eq!(written, previous);
}

/// The state of a herd from before drains, `--min-ready`, autoscaling, leftovers, metrics
/// and pidfds: a draining worker reads as stopping.
#[test]
fn an_older_herds_state_still_reads() {
    let mut older: serde_json::Value = serde_json::from_str(PREVIOUS).unwrap();
    let top = older.as_object_mut().unwrap();
    for key in ["autoscale", "leftovers", "counters", "metrics_fd", "nofile"] {
        top.remove(key);
    }
    for worker in top["pool"]["workers"].as_array_mut().unwrap() {
        worker.as_object_mut().unwrap().remove("draining");
        worker.as_object_mut().unwrap().remove("available");
    }
    for key in ["pidfd", "group", "session"] {
        top["attached"][0].as_object_mut().unwrap().remove(key);
    }
    top["listeners"][0].as_object_mut().unwrap().remove("group");
    let state: State = serde_json::from_value(older).unwrap();
    assert_eq!(state.version, OLDEST_STATE);
    let (pool, _) = previous_pool();
    let now = Epoch::at(Instant::now());
    let resumed = import(pool.config().clone(), state.cores.pool, now);
    assert!(!resumed.is_draining());
    let stopping = resumed.worker(102).unwrap();
    assert_eq!(stopping.stopped_for(), Some(Reason::ScaleDown));
    assert!(state.cores.autoscale.is_none() && state.nofile.is_none());
    assert_eq!(state.cores.attached[0].pidfd, None);
}

/// The kept lines of worker output are best effort: ones the new image cannot read are lost,
/// not the state, whose loss would end herd and its workers.
#[test]
fn a_state_whose_kept_lines_cannot_be_read_still_reads() {
    let mut state: serde_json::Value = serde_json::from_str(PREVIOUS).unwrap();
    state["lines"] = serde_json::json!({"next": "x", "lines": [1, 2]});
    let state: State = serde_json::from_value(state).unwrap();
    assert!(state.lines.is_none());
}

#[test]
fn a_state_says_its_version_first() {
    let state: State = serde_json::from_str(PREVIOUS).unwrap();
    let text = serde_json::to_string(&State {
        version: 2,
        ..state
    })
    .unwrap();
    assert!(text.starts_with(r#"{"version":2,"#), "{text}");
}

#[test]
fn a_state_of_a_version_this_herd_does_not_read_is_refused() {
    let mut state: serde_json::Value = serde_json::from_str(PREVIOUS).unwrap();
    for version in [OLDEST_STATE, STATE_VERSION] {
        state["version"] = version.into();
        assert!(read_state(&state.to_string()).is_ok(), "{version}");
    }
    state["version"] = (STATE_VERSION + 1).into();
    let error = read_state(&state.to_string()).unwrap_err().to_string();
    assert!(
        error.contains(&format!("version {}", STATE_VERSION + 1)),
        "{error}"
    );
    assert!(
        read_state(PREVIOUS).is_ok(),
        "no version: the previous herd's"
    );
}

/// The workers warming up and how each was lowered: written beside the pids an older herd
/// reads, and read back; an older herd's state (pids only) reads with the kind unknown.
#[test]
fn warming_workers_carry_how_they_were_lowered() {
    let mut state: State = serde_json::from_str(PREVIOUS).unwrap();
    state.cores.warming = vec![200, 201];
    state.cores.warming_lowered = vec![Lowered::Idle, Lowered::Nice(19)];
    let written = serde_json::to_value(&state).unwrap();
    assert!(
        written.get("warming_trickling").is_none(),
        "left out when empty"
    );
    state.cores.warming_trickling = vec![201];
    let written = serde_json::to_value(&state).unwrap();
    assert_eq!(written["warming"], serde_json::json!([200, 201]));
    assert_eq!(written["warming_trickling"], serde_json::json!([201]));
    assert_eq!(
        written["warming_lowered"],
        serde_json::json!(["Idle", { "Nice": 19 }])
    );
    let read: State = serde_json::from_value(written.clone()).unwrap();
    let cores = read.cores;
    assert_eq!(cores.warming_trickling, [201]);
    assert_eq!(
        super::super::warm_up::handed(cores.warming, cores.warming_lowered),
        [(200, Some(Lowered::Idle)), (201, Some(Lowered::Nice(19)))]
    );
    let mut older = written;
    older.as_object_mut().unwrap().remove("warming_lowered");
    older.as_object_mut().unwrap().remove("warming_trickling");
    let cores = serde_json::from_value::<State>(older).unwrap().cores;
    assert!(cores.warming_trickling.is_empty());
    assert_eq!(
        super::super::warm_up::handed(cores.warming, cores.warming_lowered),
        [(200, None), (201, None)]
    );
    // A list that does not match the pids is not trusted.
    assert_eq!(
        super::super::warm_up::handed(vec![200, 201], vec![Lowered::Idle]),
        [(200, None), (201, None)]
    );
}

/// The recycler's requests and holds: written beside what an older herd reads (which ignores
/// them), read back; absent from an older herd's state, which then carries none.
#[test]
fn the_recyclers_requests_and_holds_are_carried() {
    let mut state: State = serde_json::from_str(PREVIOUS).unwrap();
    assert!(state.cores.recycling.is_empty(), "none from an older herd");
    state.cores.recycling = herd_core::SavedRecycler {
        seed: Some(u64::MAX - 1),
        asked: vec![herd_core::SavedAsk {
            pid: 100,
            age_ms: Ago(3050),
            soon: true,
        }],
        slots: vec![herd_core::SavedSlotHold {
            slot: 0,
            quick: 3,
            failed: 2,
            not_before_ms: Some(herd_core::Ahead(58_000)),
            normal_since_ms: Some(Ago(2000)),
            counted: Some(41),
        }],
        told: vec![100],
        under_while_ready: vec![herd_core::SavedUnder {
            pid: 100,
            age_ms: Ago(3050),
        }],
    };
    let written = serde_json::to_value(&state).unwrap();
    assert_eq!(
        written["recycling"],
        serde_json::json!({
            "seed": u64::MAX - 1,
            "asked": [{"pid": 100, "age_ms": 3050, "soon": true}],
            "slots": [{"slot": 0, "quick": 3, "failed": 2, "not_before_ms": 58000, "normal_since_ms": 2000, "counted": 41}],
            "told": [100],
            "under_while_ready": [{"pid": 100, "age_ms": 3050}],
        })
    );
    let read: State = serde_json::from_value(written).unwrap();
    assert_eq!(read.cores.recycling, state.cores.recycling);
    // A slot as an older herd wrote it: no failures counted.
    let older: herd_core::SavedSlotHold =
        serde_json::from_value(serde_json::json!({"slot": 0, "quick": 1})).unwrap();
    assert_eq!(older.failed, 0);
}

/// The directory a socket was bound in is handed over as it was known (device, inode, birth
/// time), so that the new image binds it again there even if its file is gone by then.
#[test]
fn a_sockets_directory_is_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let known = crate::supervisor::socket_files::dir_identity(&dir.path().join("s")).unwrap();
    let saved = SavedSocket {
        fd: 3,
        file: (dir.path().join("s"), 1, 2),
        dir: Some(known),
        owner: Some(65534),
    };
    let read: SavedSocket = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
    assert_eq!((read.dir, read.owner), (Some(known), Some(65534)));
    // A state that says no owner, as every herd before it wrote it, reads as none.
    let older = serde_json::json!({"fd": 3, "file": [dir.path().join("s"), 1, 2]});
    let read: SavedSocket = serde_json::from_value(older).unwrap();
    assert_eq!(read.owner, None);
}

/// A re-exec runs only a binary that nobody but root and herd's user could have replaced:
/// herd started as root from a directory another user may write ran that user's program, as
/// root, at the next `herd reexec` (its check mode, then the exec).
#[test]
fn a_binary_others_could_replace_is_not_re_executed() {
    use std::os::unix::fs::PermissionsExt;
    let uid = herd_sys::process::effective_uid();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let exe = dir.join("herd");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(binary::replaceable(&exe, uid), None);
    executable(&exe).unwrap();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let why = binary::replaceable(&exe, uid).unwrap();
    let (shown, exe_shown) = (dir.display(), exe.display());
    assert_eq!(
        why,
        binary::Replaceable {
            why: format!("{shown} may be written by group or others (mode 777)"),
            fix: format!("make it writable by its owner alone (chmod go-w {shown})"),
        }
    );
    // It said "keep it where only root or uid 0 may write (each directory up to / too), and
    // restart herd": root twice, and a restart that a chmod makes needless (the check runs
    // anew at each re-exec).
    let err = format!("{:#}", executable(&exe).unwrap_err());
    assert_eq!(
        err,
        format!(
            "cannot re-execute {exe_shown}: {shown} may be written by group or others (mode \
             777), so someone else could have replaced herd's binary and would run as herd's \
             user: make it writable by its owner alone (chmod go-w {shown}), make sure the \
             binary is the one you installed, then run herd reexec again; herd keeps running"
        )
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    executable(&exe).unwrap();

    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o775)).unwrap();
    let why = binary::replaceable(&exe, uid).unwrap();
    assert_eq!(
        why.fix,
        format!("make it writable by its owner alone (chmod go-w {exe_shown})")
    );
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    if uid == 0 {
        std::os::unix::fs::chown(&exe, Some(1), None).unwrap();
        let why = binary::replaceable(&exe, 0).unwrap();
        assert_eq!(why.why, format!("{exe_shown} belongs to uid 1"));
        assert_eq!(
            why.fix,
            format!("make root its owner (chown root {exe_shown})")
        );
        // A herd of uid 2 may own its binary itself.
        let why = binary::replaceable(&exe, 2).unwrap();
        assert_eq!(
            why.fix,
            format!("make root or uid 2 its owner (chown 2 {exe_shown})")
        );
    }
    let gone = dir.join("gone");
    let why = binary::replaceable(&gone, 0).unwrap();
    assert_eq!(why.fix, "make sure it is there");
}
