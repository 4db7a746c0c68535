//! Process-level facts chittyd and the bench need from the operating system: the open-files
//! limit, and CPU time and resident memory of a process (from /proc).

use std::io;
use std::time::Duration;

/// Raises the soft limit on open files to the hard limit (every participant is a descriptor) and
/// returns the new soft limit.
pub fn raise_open_files_limit() -> io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Descriptors chittyd keeps for itself beside its participants: listeners, the admin and
/// metrics sockets, the audit file, the journal, epoll and the runtime's own, with room for
/// connections that are being set up or refused.
pub const OWN_DESCRIPTORS: u64 = 64;

/// The open-files limit that `max_participants` participants need.
pub fn descriptors_needed(max_participants: usize) -> u64 {
    u64::try_from(max_participants)
        .unwrap_or(u64::MAX)
        .saturating_add(OWN_DESCRIPTORS)
}

/// Whether failing to open, create or bind a path is the configuration's fault, which starting
/// again will not fix (the path is missing, forbidden, not a file, on a read-only file system),
/// rather than a passing state (a full disk, no memory, an interrupted call).
pub fn path_error_is_configuration(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound
            | PermissionDenied
            | IsADirectory
            | NotADirectory
            | ReadOnlyFilesystem
            | InvalidInput
            | InvalidFilename
            | AlreadyExists
    )
}

/// CPU time (user + system) and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, in bytes.
    pub rss: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status` (`None` for this process).
pub fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    parse(&stat, &status, rustix::param::clock_ticks_per_second())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable {dir}/stat")))
}

fn parse(stat: &str, status: &str, ticks_per_second: u64) -> Option<ProcSample> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu: Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_second.max(1)),
        rss: rss_kib * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files_with_awkward_names() {
        let stat = "1234 (chitty d) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    4 0 100 1000000 500 18446744073709551615";
        let status = "Name:\tchittyd\nVmRSS:\t   20480 kB\nThreads:\t4\n";
        let s = parse(stat, status, 100).unwrap();
        assert_eq!(s.cpu, Duration::from_secs(3));
        assert_eq!(s.rss, 20480 * 1024);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss > 0);
        assert!(raise_open_files_limit().unwrap() > 0);
    }
}
