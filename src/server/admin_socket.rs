//! The admin socket as a file: where it goes, whether an existing one may be replaced, its mode,
//! and removing everything chittyd created for it when it is done.
//!
//! A stale socket from a crash (one that refuses connections) is replaced; a live one, or one
//! chittyd cannot connect to for another reason (permissions), is never touched. The socket is
//! bound 0660. [`AdminSocket`] removes the socket file, and the directories it had to create,
//! when it is dropped: at the end of the shutdown, and also when start-up fails after binding,
//! so chittyd run by hand (as root, in /run) leaves nothing behind.
//!
//! Run by hand, chittyd may not be allowed to create the default `/run/chitty/admin.sock`; it
//! then uses `$XDG_RUNTIME_DIR/chitty/admin.sock`, the user's own runtime directory, where
//! chittyctl also looks ([`crate::config::user_admin_socket`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;
use tokio::net::UnixListener;

/// Why the admin socket could not be set up.
#[derive(Debug, Error)]
pub enum AdminError {
    /// Another chittyd answers on the socket.
    #[error("admin socket {0} is in use by a running chittyd; not taking it over")]
    InUse(PathBuf),
    /// Whether a chittyd answers on the socket cannot be told: connecting failed for a reason
    /// other than "nobody listens" (most often permissions, when started as another user), so
    /// the socket may be live and is not touched.
    #[error(
        "cannot tell whether admin socket {path} is in use: connecting to it failed ({source}); \
         leaving it alone: run chittyd as a user who may use it, or pass another --admin-socket"
    )]
    Unverifiable {
        /// The socket path.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// Something other than a socket is at the path.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Creating, binding or setting its mode failed.
    #[error("cannot create admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl AdminError {
    /// Whether the configuration is at fault (see [`crate::exit`]): another chittyd's socket, a
    /// socket chittyd may not use, a path that is not a socket or cannot be created. A socket
    /// someone else bound between the look and the bind is not.
    pub fn is_configuration(&self) -> bool {
        match self {
            AdminError::InUse(_) | AdminError::Unverifiable { .. } | AdminError::NotASocket(_) => {
                true
            }
            AdminError::Io { source, .. } => crate::os::path_error_is_configuration(source),
        }
    }
}

/// A bound admin socket, and what was created for it, removed on drop.
#[derive(Debug)]
pub struct AdminSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// Device and inode of the socket file bound: only that file is removed, never one another
    /// process put at the path since.
    file: (u64, u64),
    /// The directories created for it, deepest first; each is removed if it is empty.
    created: Vec<PathBuf>,
}

impl AdminSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, to serve on; the socket stays owned here, so it is still removed on drop.
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        drop(self.listener.take());
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.file);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("removing admin socket {}: {e}", self.path.display());
        }
        for dir in &self.created {
            // Not empty (someone else's files): it stays.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Binds the admin socket at `path`, mode 0660, creating its directory if need be. A stale
/// socket left by a crash is replaced; one that a live chittyd answers on is not, and neither
/// is one we cannot connect to for any other reason: only ECONNREFUSED proves that nobody
/// listens.
pub fn bind(path: &Path) -> Result<AdminSocket, AdminError> {
    let io_err = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(AdminError::NotASocket(path.to_owned()));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(AdminError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("replacing stale admin socket {}", path.display());
                match std::fs::remove_file(path) {
                    // Gone meanwhile: nothing to replace.
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
                    _ => {}
                }
            }
            // Removed between the look and the connect.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AdminError::Unverifiable {
                    path: path.to_owned(),
                    source,
                });
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut socket = AdminSocket {
        listener: None,
        path: path.to_owned(),
        file: (0, 0),
        created: Vec::new(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // On failure `socket` is dropped, removing what was created so far.
        socket.created = create_dirs(dir).map_err(io_err)?;
    }
    // Bound with the process umask (which at worst leaves out group write), then opened to the
    // group: nobody else can ever connect.
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
    socket.file = (meta.dev(), meta.ino());
    socket.listener = Some(listener);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    Ok(socket)
}

/// Creates `dir` and its missing parents; returns those it created, deepest first.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    let mut created = Vec::new();
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => created.insert(0, d.to_path_buf()),
            // Another process made it meanwhile: it is not ours to remove.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for c in &created {
                    let _ = std::fs::remove_dir(c);
                }
                return Err(e);
            }
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_removes_the_socket_and_the_directories_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let kept = tmp.path().join("kept");
        std::fs::create_dir(&kept).unwrap();
        let path = kept.join("a/b/admin.sock");
        let socket = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        drop(socket);
        assert!(!kept.join("a").exists(), "created directories removed");
        assert!(kept.exists(), "a directory that was there stays");
    }

    #[tokio::test]
    async fn a_directory_someone_else_filled_and_a_replaced_socket_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let path = dir.join("admin.sock");
        let socket = bind(&path).unwrap();
        std::fs::write(dir.join("other"), "").unwrap();
        // Another process's socket at the same path (ours was removed behind our back).
        std::fs::remove_file(&path).unwrap();
        let _theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(socket);
        assert!(path.exists(), "not our socket: left alone");
        assert!(dir.join("other").exists());
    }
}
