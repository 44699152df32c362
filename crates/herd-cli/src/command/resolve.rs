//! Finding the worker's program: a path, or a name searched in `PATH`; and checking that the
//! system can execute it (a binary, or a script whose `#!` interpreter exists).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Finds `program` the way a shell would: as given if it contains `/`, else in `path_var`.
/// Relative paths (and relative `PATH` entries) are taken in `base`, the directory the
/// program will run in, when it is not herd's own. The error says what is wrong and how to
/// fix it.
pub fn resolve_program(
    program: &OsStr,
    path_var: Option<&OsStr>,
    base: Option<&Path>,
) -> Result<PathBuf, String> {
    resolve(program, path_var, base, Runner::Herd)
}

/// [`resolve_program`] for `herd attach`, which runs the program itself: a relative path is
/// taken in the caller's directory, and the error says so.
pub fn resolve_attached(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    resolve(program, path_var, None, Runner::Caller)
}

/// Who runs the program, and so whose working directory a relative path is taken in.
#[derive(Clone, Copy)]
enum Runner {
    /// herd, as a worker (in herd's directory, or `--chdir`).
    Herd,
    /// The process that resolves it (`herd attach`).
    Caller,
}

fn resolve(
    program: &OsStr,
    path_var: Option<&OsStr>,
    base: Option<&Path>,
    runner: Runner,
) -> Result<PathBuf, String> {
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err(
            "the program's name is empty (\"\"): give the program to run and its arguments \
             after --, e.g. -- python3 app.py"
                .to_string(),
        );
    }
    if let Some(why) = base.and_then(missing_dir) {
        return Err(why);
    }
    let within = |path: &Path| match base {
        Some(base) if path.is_relative() => base.join(path.strip_prefix("./").unwrap_or(path)),
        _ => path.to_path_buf(),
    };
    let in_dir = match base {
        Some(b) => format!(" (in --chdir {})", b.display()),
        // A relative path in a config file is not taken in the file's directory: say where.
        None if program.as_bytes().contains(&b'/') && Path::new(program).is_relative() => {
            std::env::current_dir().map_or_else(
                |_| String::new(),
                |cwd| match runner {
                    Runner::Herd => format!(
                        " (in herd's working directory {}: a relative command is found where the \
                         workers run, herd's directory or --chdir DIR)",
                        cwd.display()
                    ),
                    Runner::Caller => format!(" (in the current directory {})", cwd.display()),
                },
            )
        }
        None => String::new(),
    };
    if program.as_bytes().contains(&b'/') {
        let path = within(Path::new(program));
        return check_executable(&path)
            .map(|()| path)
            .map_err(|e| format!("{e}{in_dir}"));
    }
    let default_path = OsString::from("/usr/local/bin:/usr/bin:/bin");
    let search = path_var.unwrap_or(&default_path);
    for dir in std::env::split_paths(search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = within(&dir.join(program));
        if is_executable_file(&candidate) {
            return check_executable(&candidate).map(|()| candidate);
        }
    }
    Err(format!(
        "command '{shown}' was not found in PATH ({}){in_dir}; install it, or give its full path",
        search.to_string_lossy()
    ))
}

/// Why the workers' directory `dir` cannot be used, if it is gone (removed or moved since herd
/// started) or no directory: a program looked for in it would be reported missing instead.
fn missing_dir(dir: &Path) -> Option<String> {
    // The words of a worker's own chdir failure (`WorkerCommand::describe`).
    let why = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => e,
        Ok(meta) if !meta.is_dir() => std::io::Error::from_raw_os_error(libc::ENOTDIR),
        _ => return None,
    };
    Some(format!(
        "cannot change to the workers' directory --chdir {}: {why}",
        dir.display()
    ))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Explains why `execve(program)` failed with `err` (`as_user` says as whom, if not herd's
/// user): a missing `#!` interpreter, a script without `#!`, or the system's own words.
pub fn explain_exec_error(program: &Path, err: &std::io::Error, as_user: &str) -> String {
    if let Err(why) = check_executable(program) {
        return format!("cannot execute: {why}");
    }
    let hint = match err.raw_os_error() {
        Some(libc::ENOEXEC) => {
            "; it is neither a program for this machine nor a script with a '#!' line"
        }
        Some(libc::EACCES) if !as_user.is_empty() => {
            "; that user needs permission to read and search every directory on its path"
        }
        // Linux's refusal of a new user's execve over its RLIMIT_NPROC.
        Some(libc::EAGAIN) if !as_user.is_empty() => {
            "; that user runs as many processes (threads included) as its process limit \
             allows: raise --rlimit nproc, or stop some of its processes"
        }
        _ => "",
    };
    format!(
        "cannot execute '{}'{as_user}: {err}{hint}",
        program.display()
    )
}

fn check_executable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("command '{shown}' does not exist"),
        _ => format!("cannot use command '{shown}': {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!("command '{shown}' is a directory, not a program"));
    }
    // execve runs regular files only; and opening a FIFO to read its first bytes would block.
    if !meta.is_file() {
        return Err(format!(
            "command '{shown}' is not a regular file (a FIFO, socket or device), so it cannot \
             be a program; give the path of the program itself"
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "command '{shown}' is not executable (mode {:o}); run 'chmod +x {shown}' or start \
             it through its interpreter (e.g. 'python3 {shown}')",
            mode & 0o7777
        ));
    }
    check_format(path)
}

/// How many `#!` interpreters deep the check follows, as the kernel does before it gives up
/// (`ELOOP`); deeper chains are left to `execve`.
const MAX_INTERPRETER_DEPTH: usize = 4;

/// The first bytes of `path` say how the system executes it: `#!INTERPRETER` (which must
/// exist, and be executable in turn: a script's interpreter may be a script, followed up to
/// [`MAX_INTERPRETER_DEPTH`] levels), a binary, or text without `#!`, which `execve` refuses
/// (only a shell's fallback would run it, through `/bin/sh`: herd does not guess the
/// interpreter).
fn check_format(path: &Path) -> Result<(), String> {
    let mut subject = format!("command '{}'", path.display());
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_INTERPRETER_DEPTH {
        let Some(interpreter) = check_head(&current, &subject)? else {
            return Ok(());
        };
        let ishown = interpreter.display();
        match std::fs::metadata(&interpreter) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "{subject} names the interpreter '{ishown}' on its '#!' line, and \
                     '{ishown}' does not exist; install it, or fix the line \
                     (e.g. '#!/usr/bin/env python3')"
                ))
            }
            Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
                return Err(format!(
                    "{subject} names the interpreter '{ishown}' on its '#!' line, and \
                     '{ishown}' is not an executable program; fix the line"
                ))
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
        subject = format!("the interpreter '{ishown}' of {subject}");
        current = interpreter;
    }
    Ok(())
}

/// Reads the first bytes of `path` (`subject` in messages): `Some(interpreter)` for a `#!`
/// script, `None` for a binary or a file that cannot be read (left to `execve`).
fn check_head(path: &Path, subject: &str) -> Result<Option<PathBuf>, String> {
    let mut head = [0u8; 256];
    // An unreadable program (mode --x) can still be executed: leave that to execve. Never
    // blocks: should the file have become a FIFO since it was checked, the read fails.
    let open = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let Ok(n) = open.and_then(|mut f| f.read(&mut head)) else {
        return Ok(None);
    };
    let head = &head[..n];
    if head.is_empty() {
        return Err(format!(
            "{subject} is an empty file; write the program, or a script starting \
             with a '#!' line"
        ));
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or(line);
        let interpreter = line
            .split(|b| b.is_ascii_whitespace())
            .find(|w| !w.is_empty())
            .map(|w| PathBuf::from(OsStr::from_bytes(w)));
        return match interpreter {
            Some(interpreter) => Ok(Some(interpreter)),
            None => Err(format!(
                "{subject} has an empty '#!' line; name its interpreter (e.g. '#!/bin/sh')"
            )),
        };
    }
    let binary = head.starts_with(b"\x7fELF") || head.contains(&0);
    if !binary {
        return Err(format!(
            "{subject} is a script without a '#!' line, which the system cannot execute; add \
             one as its first line (e.g. '#!/bin/sh'), or run it through its interpreter \
             (e.g. 'sh {}')",
            path.display()
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn finds_programs_in_path() {
        let found =
            resolve_program(OsStr::new("sh"), Some(OsStr::new("/nope:/bin")), None).unwrap();
        assert_eq!(found, PathBuf::from("/bin/sh"));
        let err = resolve_program(
            OsStr::new("no-such-herd-cmd"),
            Some(OsStr::new("/bin")),
            None,
        )
        .unwrap_err();
        assert!(err.contains("not found in PATH"), "{err}");
    }

    #[test]
    fn explains_unusable_paths() {
        let resolve = |p: &str| resolve_program(OsStr::new(p), None, None).unwrap_err();
        assert!(resolve("/etc/passwd").contains("not executable"));
        assert!(resolve("/etc").contains("directory"));
        assert!(resolve("./nope").contains("does not exist"));
        assert!(resolve("").contains("give the program to run"));
    }

    #[test]
    fn relative_commands_are_found_where_they_run() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "app", b"#!/bin/sh\n");
        let found = resolve_program(OsStr::new("./app"), None, Some(dir.path())).unwrap();
        assert_eq!(found, dir.path().join("app"));
        let found = resolve_program(OsStr::new("app"), Some(OsStr::new(".")), Some(dir.path()));
        assert_eq!(found.unwrap(), dir.path().join("app"));
        let err = resolve_program(OsStr::new("./nope"), None, Some(dir.path())).unwrap_err();
        assert!(
            err.contains("does not exist") && err.contains("--chdir"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_relative_command_says_where_it_was_looked_for() {
        let err = resolve_program(OsStr::new("./no-such-app.sh"), None, None).unwrap_err();
        // `herd attach` runs it itself, in its caller's directory: not herd's.
        let attached = resolve_attached(OsStr::new("./no-such-app.sh"), None).unwrap_err();
        assert!(
            attached.contains(" (in the current directory "),
            "{attached}"
        );
        assert!(!attached.contains("herd's"), "{attached}");
        let cwd = std::env::current_dir().unwrap();
        assert!(
            err.starts_with(
                "command './no-such-app.sh' does not exist (in herd's working \
                             directory "
            ) && err.contains(&cwd.display().to_string())
                && err.contains("--chdir DIR"),
            "{err}"
        );
        let err = resolve_program(OsStr::new("/no-such-app.sh"), None, None).unwrap_err();
        assert_eq!(err, "command '/no-such-app.sh' does not exist");
        let err = resolve_program(OsStr::new("no-such-app"), None, None).unwrap_err();
        assert!(!err.contains("working directory"), "{err}");
    }

    /// A directory removed since herd started is named, not the program in it.
    #[test]
    fn a_chdir_that_is_gone_is_named_instead_of_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = resolve_program(OsStr::new("./app"), None, Some(&gone)).unwrap_err();
        let expected = format!(
            "cannot change to the workers' directory --chdir {}: No such file",
            gone.display()
        );
        assert!(err.starts_with(&expected), "{err}");
        let file = script(dir.path(), "file", b"#!/bin/sh\n");
        let err = resolve_program(OsStr::new("app"), Some(OsStr::new(".")), Some(&file));
        assert!(err.unwrap_err().contains("Not a directory"));
    }

    #[test]
    fn scripts_need_an_interpreter_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, content: &[u8]| {
            let path = script(dir.path(), name, content);
            resolve_program(path.as_os_str(), None, None).map(|_| ())
        };
        assert!(check("ok.sh", b"#!/bin/sh\necho hi\n").is_ok());
        assert!(check("env.py", b"#! /usr/bin/env python3 -u\n").is_ok());
        assert!(check("binary", &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).is_ok());
        assert!(check("garbage", &[0, 1, 2, 3]).is_ok());
        let e = check("missing", b"#!/nonexistent/interp\n").unwrap_err();
        assert!(e.contains("interpreter '/nonexistent/interp'"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        let e = check("plain", b"echo hi\n").unwrap_err();
        assert!(e.contains("without a '#!' line"), "{e}");
        assert!(check("empty", b"").unwrap_err().contains("empty file"));
        assert!(check("blank", b"#!\n")
            .unwrap_err()
            .contains("empty '#!' line"));
        assert!(check("dir", b"#!/tmp\n")
            .unwrap_err()
            .contains("not an executable"));
    }

    #[test]
    fn an_interpreter_that_is_a_script_is_checked_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let check = |name: &str, content: &str| {
            let path = script(dir.path(), name, content.as_bytes());
            resolve_program(path.as_os_str(), None, None).map(|_| ())
        };
        check("bad1", "#!/nonexistent/interp\n").unwrap_err();
        let e = check("bad4", &format!("#!{d}/bad1\n")).unwrap_err();
        assert_eq!(
            e,
            format!(
                "the interpreter '{d}/bad1' of command '{d}/bad4' names the interpreter \
                 '/nonexistent/interp' on its '#!' line, and '/nonexistent/interp' does not \
                 exist; install it, or fix the line (e.g. '#!/usr/bin/env python3')"
            )
        );
        let e = check("top", &format!("#!{d}/bad4 -x\n")).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "the interpreter '{d}/bad1' of the interpreter '{d}/bad4' of command '{d}/top'"
            )),
            "{e}"
        );
        check("plain", "echo hi\n").unwrap_err();
        let e = check("via-plain", &format!("#!{d}/plain\n")).unwrap_err();
        assert!(e.contains("without a '#!' line"), "{e}");
        // Good chains pass, up to the kernel's depth; a loop is left to execve.
        check("good1", "#!/bin/sh\n").unwrap();
        check("good2", &format!("#!{d}/good1\n")).unwrap();
        check("loop", &format!("#!{d}/loop\n")).unwrap();
    }
}
