//! Where JSON lines are appended: the audit file or standard output, and how a line cut short by
//! a failed write is taken back out.
//!
//! A write that fails part-way (the disk filled up after some bytes) leaves the start of a line
//! at the end of the file; the next record would be glued onto it, and the file would hold a
//! line that is not JSON. So the writer asks its sink to [`Sink::cut`] the bytes of the
//! unfinished line. The cut is computed from the file's length *now* and the size of the
//! fragment, never from a length remembered earlier: logrotate's `copytruncate` shortens the
//! file under us.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An append-only byte sink for whole JSON lines.
pub trait Sink: Send {
    /// Appends a prefix of `buf` and says how long it was, like [`io::Write::write`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Removes the last `tail` bytes, the unfinished line a failed write left behind. An error
    /// means they are still there (the sink is not a regular file, or truncation failed).
    fn cut(&mut self, tail: u64) -> io::Result<()>;
}

impl Sink for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn cut(&mut self, tail: u64) -> io::Result<()> {
        let meta = self.metadata()?;
        if !meta.is_file() {
            // A pipe or a terminal on standard output: what was sent cannot be taken back.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a regular file, so a partly written line cannot be removed",
            ));
        }
        // Shorter than the fragment: the file was truncated (copytruncate) since the fragment
        // was written, and the fragment went with it.
        if let Some(keep) = meta.len().checked_sub(tail) {
            self.set_len(keep)?;
            // Standard output redirected with `>` is not in append mode: without this the next
            // write would land at the old offset and leave a hole of zeros.
            self.seek(SeekFrom::End(0))?;
        }
        Ok(())
    }
}

/// Opens `path` for appending, created mode 0640 (readable by the admin group, not by others);
/// "-" is a duplicate of standard output, so that a redirected standard output can be cut back
/// like a file.
pub fn open(path: &Path) -> io::Result<File> {
    if path.as_os_str() == "-" {
        return Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?));
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_removes_the_fragment_from_the_current_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = open(&path).unwrap();
        Sink::write(&mut file, b"{\"a\":1}\n{\"b\":").unwrap();
        file.cut(5).unwrap();
        Sink::write(&mut file, b"{\"c\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"c\":3}\n"
        );
    }

    #[test]
    fn cut_after_copytruncate_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = open(&path).unwrap();
        Sink::write(&mut file, b"{\"a\":1}\n{\"b\":").unwrap();
        // logrotate copies the file away and truncates it to nothing under us.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        file.cut(5).unwrap();
        Sink::write(&mut file, b"{\"c\":3}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"c\":3}\n");
    }

    #[test]
    fn a_file_not_in_append_mode_gets_no_hole_after_a_cut() {
        // What standard output redirected with `>` looks like.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut file = File::create(&path).unwrap();
        Sink::write(&mut file, b"{\"a\":1}\n{\"b\":").unwrap();
        file.cut(5).unwrap();
        Sink::write(&mut file, b"{\"c\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"c\":3}\n"
        );
    }

    #[test]
    fn a_pipe_cannot_be_cut() {
        let (_reader, writer) = io::pipe().unwrap();
        let mut file = File::from(std::os::fd::OwnedFd::from(writer));
        let e = file.cut(3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}
