//! The control protocol's error codes: one closed list, documented in one place.

use serde::{Deserialize, Serialize};

/// Every error the control socket can return. Documented one by one in
/// `docs/control-protocol.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The peer's uid and gid are not allowed.
    PermissionDenied,
    /// The line is not a JSON object with a `version` and a `command`.
    BadRequest,
    /// The line is longer than [`MAX_REQUEST`]; the connection is closed.
    RequestTooLarge,
    /// `version` is not one this herd speaks.
    UnsupportedVersion,
    /// `command` is not one of [`COMMANDS`].
    UnknownCommand,
    /// An argument is missing, unknown, or out of range.
    InvalidArgument,
    /// Another operation is in progress (an upgrade), too many connections are open, or (for a
    /// `status`) too many replies wait for clients that do not read them.
    Busy,
    /// The upgrade was aborted; the old workers keep serving.
    UpgradeFailed,
    /// herd is stopping and takes no more changes.
    Stopping,
    /// The connection was idle too long; it is closed.
    IdleTimeout,
    /// A re-exec refused the binary on disk: it is not an executable file, or it failed its
    /// check. herd keeps running.
    ReexecCheckFailed,
    /// `reload_config`: the config file cannot be read, is invalid, or changes what needs new
    /// sockets. The workers are left as they are.
    ConfigInvalid,
    /// Something failed inside herd.
    Internal,
    /// What was asked is not available with the options herd runs with (`logs` without
    /// `--worker-output prefix|json`).
    Unavailable,
    /// A takeover's `stop` to a herd that another takeover's stop reached first: it stops for
    /// that herd, and the one asking must give up rather than serve beside it.
    TakenOver,
}

impl ErrorCode {
    /// Every code, in the order of the documentation.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::PermissionDenied,
        ErrorCode::BadRequest,
        ErrorCode::RequestTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownCommand,
        ErrorCode::InvalidArgument,
        ErrorCode::Busy,
        ErrorCode::UpgradeFailed,
        ErrorCode::Stopping,
        ErrorCode::IdleTimeout,
        ErrorCode::ReexecCheckFailed,
        ErrorCode::ConfigInvalid,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::TakenOver,
    ];

    /// The code as the wire writes it (`invalid_argument`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Busy => "busy",
            ErrorCode::UpgradeFailed => "upgrade_failed",
            ErrorCode::Stopping => "stopping",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::ReexecCheckFailed => "reexec_check_failed",
            ErrorCode::ConfigInvalid => "config_invalid",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TakenOver => "taken_over",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
