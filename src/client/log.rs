//! The client log: every received message appended as `L[12] @ alice: hello`, as the original
//! client wrote it.
//!
//! It holds chat text, direct messages included, so it is private: created mode 0600, in a
//! folder created 0700 when chitty creates it. An existing regular file that others may read is
//! tightened to 0600, and the person is told (a file chitty may not change, say someone else's,
//! is left as it is, with a warning). Files that are not regular files (`--log /dev/null`) are
//! never touched.

use super::people::Directory;
use super::{ClientError, printable};
use crate::pb;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The client log file, open for appending.
#[derive(Debug)]
pub struct ClientLog {
    file: std::fs::File,
    /// What the person should know about the file's permissions, once.
    warning: Option<String>,
}

impl ClientLog {
    /// Opens `path` for appending, creating it (0600) and its folder (0700) if needed.
    pub fn open(path: &Path) -> Result<ClientLog, ClientError> {
        let fail = |source| ClientError::Log {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        let mode = meta.permissions().mode() & 0o7777;
        let warning = (meta.is_file() && mode & 0o077 != 0).then(|| {
            let shown = path.display();
            match file.set_permissions(Permissions::from_mode(mode & 0o700)) {
                Ok(()) => format!(
                    "the client log {shown} was open to others (mode {mode:04o}); it is now \
                     private ({:04o})",
                    mode & 0o700
                ),
                Err(e) => format!(
                    "the client log {shown} is open to others (mode {mode:04o}) and cannot be \
                     made private: {e}"
                ),
            }
        });
        Ok(ClientLog { file, warning })
    }

    /// What the person should be told about the file, once: it was tightened, or could not be.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Appends `msg`'s line.
    pub fn record(&mut self, msg: &pb::ChatMessage) -> std::io::Result<()> {
        writeln!(self.file, "{}", log_line(msg))
    }
}

/// The client log's line for a message, in the original's format: `L[12] @ alice: hello`
/// (`@ #5` for a sender without a name).
pub fn log_line(msg: &pb::ChatMessage) -> String {
    format!(
        "L[{}] @ {}: {}",
        msg.timestamp,
        Directory::sender(msg),
        printable(&msg.message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_log_and_its_folder_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/chitty/alice.log");
        let mut log = ClientLog::open(&path).unwrap();
        assert_eq!(log.take_warning(), None);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("state/chitty")), 0o700);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
    }

    #[test]
    fn an_existing_log_open_to_others_is_tightened_and_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.log");
        std::fs::write(&path, "L[1] @ bob: old\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let mut log = ClientLog::open(&path).unwrap();
        let warning = log.take_warning().unwrap();
        assert!(
            warning.contains("was open to others (mode 0644)"),
            "{warning}"
        );
        assert!(warning.ends_with("it is now private (0600)"), "{warning}");
        assert_eq!(log.take_warning(), None, "said once");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn anonymous_senders_are_logged_by_id() {
        let msg = pb::ChatMessage {
            timestamp: 12,
            sender_id: 5,
            message: "hi".into(),
            ..Default::default()
        };
        assert_eq!(log_line(&msg), "L[12] @ #5: hi");
    }
}
