//! The state file, `state.json` in the state directory: its format, how it is read (every way it
//! can be wrong is an error that names the file), and how it is written (atomically: a
//! temporary file, fsync, rename, fsync of the directory). The directory is locked (`flock`) for
//! as long as chittyd runs, so two chittyds never share one.

use super::reserve::Counts;
use super::{SavedBan, StateError};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "state.json";
/// The format this chittyd writes and reads. A chittyd that changes the format so that older
/// ones would misread it writes a higher number; older ones then refuse the file.
pub const FORMAT: u64 = 1;
/// Counters above this are not a state chittyd can have written (it would take centuries of
/// events); such a file is corrupt.
const MAX_COUNTER: u64 = 1 << 62;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The reservation (or, after a clean stop, the exact counters).
    pub counts: Counts,
    /// The bans in force when it was written.
    pub bans: Vec<SavedBan>,
}

impl Default for Saved {
    fn default() -> Self {
        Saved {
            counts: Counts::FIRST,
            bans: Vec::new(),
        }
    }
}

/// The file's JSON form. Field names are a stable interface (an operator may read the file).
#[derive(Serialize, Deserialize)]
struct Form {
    format: u64,
    /// Which chittyd wrote it; informative only.
    #[serde(default, skip_deserializing)]
    written_by: String,
    lamport: u64,
    next_user_id: u64,
    #[serde(default)]
    bans: Vec<BanForm>,
}

#[derive(Serialize, Deserialize)]
struct BanForm {
    name: String,
    until: String,
    since: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    actor: String,
}

/// The state directory, locked, and the paths in it.
#[derive(Debug)]
pub struct StateDir {
    /// The directory itself, open: it holds the lock, and the directory is fsynced through it
    /// after a rename.
    dir: File,
    path: PathBuf,
    tmp: PathBuf,
}

impl StateDir {
    /// Creates the directory if needed (0750, less the umask), locks it, and reads the file; a
    /// missing file is a first start.
    pub fn open(dir: &Path) -> Result<(StateDir, Saved), StateError> {
        let dir_err = |source| StateError::Dir {
            dir: dir.to_owned(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(dir_err)?;
        let handle = File::open(dir).map_err(dir_err)?;
        match rustix::fs::flock(
            &handle,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(StateError::InUse(dir.to_owned()));
            }
            Err(e) => return Err(dir_err(e.into())),
        }
        let state = StateDir {
            dir: handle,
            path: dir.join(FILE_NAME),
            tmp: dir.join(format!("{FILE_NAME}.tmp")),
        };
        // What a crash in the middle of a write left: never read, so never trusted.
        match fs::remove_file(&state.tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(dir_err(e)),
            _ => {}
        }
        let saved = match fs::read(&state.path) {
            Ok(bytes) => parse(&state.path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Saved::default(),
            Err(source) => {
                return Err(StateError::Read {
                    path: state.path.clone(),
                    source,
                });
            }
        };
        Ok((state, saved))
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `saved`, atomically and durably: once this returns, a crash leaves
    /// exactly this content; if it fails, the previous file is still there, whole.
    pub fn write(&self, saved: &Saved) -> io::Result<()> {
        let bytes = encode(saved);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&self.tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&self.tmp, &self.path)?;
            // The rename is durable only once the directory is.
            self.dir.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        written
    }
}

fn encode(saved: &Saved) -> Vec<u8> {
    let time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let form = Form {
        format: FORMAT,
        written_by: format!("chittyd {}", env!("CARGO_PKG_VERSION")),
        lamport: saved.counts.lamport,
        next_user_id: saved.counts.next_id,
        bans: saved
            .bans
            .iter()
            .map(|b| BanForm {
                name: b.name.clone(),
                until: time(b.until),
                since: time(b.since),
                reason: b.reason.clone(),
                actor: b.actor.clone(),
            })
            .collect(),
    };
    // Serializing these plain fields cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&form).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Reads the file's content; `path` only names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Saved, StateError> {
    let corrupt = |why: String| StateError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON ({e})")))?;
    let format = value
        .get("format")
        .ok_or_else(|| corrupt("it has no \"format\" number".into()))?
        .as_u64()
        .ok_or_else(|| corrupt("its \"format\" is not a whole number".into()))?;
    if format > FORMAT {
        return Err(StateError::Newer {
            path: path.to_owned(),
            found: format,
        });
    }
    if format < FORMAT {
        return Err(corrupt(format!("format {format} was never written")));
    }
    let form: Form = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    if form.lamport > MAX_COUNTER {
        return Err(corrupt(format!("lamport {} is out of range", form.lamport)));
    }
    if form.next_user_id == 0 || form.next_user_id > MAX_COUNTER {
        return Err(corrupt(format!(
            "next_user_id {} is out of range",
            form.next_user_id
        )));
    }
    let time = |what: &str, name: &str, s: &str| {
        humantime::parse_rfc3339(s).map_err(|e| {
            corrupt(format!(
                "the ban on {name:?} has a bad {what} time {s:?} ({e})"
            ))
        })
    };
    let mut bans = Vec::with_capacity(form.bans.len());
    for b in form.bans {
        if b.name.is_empty() {
            return Err(corrupt("a ban has an empty name".into()));
        }
        bans.push(SavedBan {
            until: time("until", &b.name, &b.until)?,
            since: time("since", &b.name, &b.since)?,
            name: b.name,
            reason: b.reason,
            actor: b.actor,
        });
    }
    Ok(Saved {
        counts: Counts {
            lamport: form.lamport,
            next_id: form.next_user_id,
        },
        bans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn path() -> &'static Path {
        Path::new("/var/lib/chitty/state.json")
    }

    fn err(text: &str) -> String {
        parse(path(), text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn what_is_written_reads_back() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let saved = Saved {
            counts: Counts {
                lamport: 1_000_042,
                next_id: 1_000_007,
            },
            bans: vec![SavedBan {
                name: "Bob".into(),
                until: t + Duration::from_secs(3600),
                since: t,
                reason: "spamming \"all\"".into(),
                actor: "uid=0 pid=1".into(),
            }],
        };
        let bytes = encode(&saved);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"format\": 1"), "{text}");
        assert!(
            text.contains("\"until\": \"2027-01-15T09:00:00.123Z\""),
            "{text}"
        );
        assert_eq!(parse(path(), &bytes).unwrap(), saved);
        assert_eq!(
            parse(path(), br#"{"format":1,"lamport":0,"next_user_id":1}"#).unwrap(),
            Saved::default(),
            "bans may be left out"
        );
    }

    #[test]
    fn a_corrupt_or_newer_file_is_an_error_naming_it() {
        for (text, why) in [
            ("", "not JSON"),
            ("{\"format\":1,\"lamport\":12", "not JSON"),
            ("[1,2]", "no \"format\""),
            ("{\"lamport\":1}", "no \"format\""),
            ("{\"format\":\"1\"}", "not a whole number"),
            (
                "{\"format\":0,\"lamport\":0,\"next_user_id\":1}",
                "never written",
            ),
            (
                "{\"format\":1,\"next_user_id\":1}",
                "missing field `lamport`",
            ),
            (
                "{\"format\":1,\"lamport\":-3,\"next_user_id\":1}",
                "invalid value",
            ),
            (
                "{\"format\":1,\"lamport\":0,\"next_user_id\":0}",
                "next_user_id 0",
            ),
            (
                "{\"format\":1,\"lamport\":18446744073709551615,\"next_user_id\":1}",
                "out of range",
            ),
            (
                r#"{"format":1,"lamport":0,"next_user_id":1,"bans":[{"name":"bob","until":"soon","since":"2026-01-01T00:00:00Z"}]}"#,
                "bad until time \"soon\"",
            ),
            (
                r#"{"format":1,"lamport":0,"next_user_id":1,"bans":[{"name":"","until":"2026-01-01T00:00:00Z","since":"2026-01-01T00:00:00Z"}]}"#,
                "empty name",
            ),
        ] {
            let e = err(text);
            assert!(
                e.starts_with("state file /var/lib/chitty/state.json is corrupt: ")
                    && e.contains(why),
                "{text:?}: {e}"
            );
        }
        let e = err("{\"format\":2,\"whatever\":true}");
        assert!(
            e.starts_with("state file /var/lib/chitty/state.json was written by a newer chittyd")
                && e.contains("format 2"),
            "{e}"
        );
    }

    #[test]
    fn writes_replace_the_file_whole_and_the_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        let (state, saved) = StateDir::open(&sub).unwrap();
        assert_eq!(saved, Saved::default(), "a first start");
        assert!(matches!(
            StateDir::open(&sub).unwrap_err(),
            StateError::InUse(_)
        ));
        let mut next = Saved::default();
        next.counts.lamport = 77;
        state.write(&next).unwrap();
        next.counts.lamport = 78;
        state.write(&next).unwrap();
        assert!(!sub.join("state.json.tmp").exists());
        drop(state);
        // Left by a crash in the middle of a write: ignored and removed.
        fs::write(sub.join("state.json.tmp"), b"{\"format\":1,\"lam").unwrap();
        let (_state, saved) = StateDir::open(&sub).unwrap();
        assert_eq!(saved.counts.lamport, 78);
        assert!(!sub.join("state.json.tmp").exists());
    }
}
