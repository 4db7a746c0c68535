//! What the accept loop decides before a connection gets any HTTP: whether its address may open
//! another connection (open connections per address, and new connections per address per time
//! window) and how long to wait after `accept` itself fails. How often to say so in the log is
//! [`crate::throttle`]'s decision.
//!
//! Everything here is plain logic that takes the time as a parameter, so it is tested without a
//! clock; the accept loop in `server/mod.rs` passes `Instant::now()`.
//!
//! The per-address table holds an entry only while an address has a connection open or its
//! token bucket is still refilling: an idle entry carries no information (a new entry starts
//! with a full bucket too), so it is dropped. The table therefore holds at most the addresses
//! with open connections (bounded by the open-files limit) plus those that connected within the
//! last window (bounded by the accept rate), whatever a flood of fresh source addresses does.

use super::stats::EdgeStats;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Per-address limits on the chat port. Zero turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections one address may hold open at once.
    pub max_per_ip: u32,
    /// New connections one address may open per `window`, which is also the burst it may open
    /// at once (a token bucket of this size, refilled at this many per window).
    pub new_per_ip: u32,
    /// The window of `new_per_ip`.
    pub window: Duration,
}

impl Default for ConnLimits {
    /// 256 open connections per address leaves room for a NAT gateway with many people behind
    /// it; 64 new ones per second is more than any client reconnecting needs, and far below
    /// what a script opening connections in a loop does.
    fn default() -> Self {
        ConnLimits {
            max_per_ip: 256,
            new_per_ip: 64,
            window: Duration::from_secs(1),
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already had `max_per_ip` connections open.
    TooManyOpen,
    /// Its address had opened `new_per_ip` connections within the window.
    TooManyNew,
}

impl Refusal {
    /// What the log says.
    pub fn describe(self, limits: &ConnLimits) -> String {
        match self {
            Refusal::TooManyOpen => format!(
                "{} connections already open from this address (--max-connections-per-ip)",
                limits.max_per_ip
            ),
            Refusal::TooManyNew => format!(
                "more than {} new connections from this address in {} (--new-connections-per-ip)",
                limits.new_per_ip,
                humantime::format_duration(limits.window)
            ),
        }
    }
}

/// One address's state.
#[derive(Debug)]
struct Entry {
    open: u32,
    /// Tokens left in the bucket as of `refreshed`.
    tokens: f64,
    refreshed: Instant,
}

/// The per-address table.
#[derive(Debug)]
pub struct AddrTable {
    limits: ConnLimits,
    entries: HashMap<IpAddr, Entry>,
    /// Sweep idle entries once the table reaches this size, so that the sweep's cost is spread
    /// over at least as many admissions as the table holds.
    sweep_at: usize,
}

/// The smallest table size that triggers a sweep from `admit`.
const MIN_SWEEP: usize = 1024;

impl AddrTable {
    /// An empty table enforcing `limits`.
    pub fn new(limits: ConnLimits) -> AddrTable {
        AddrTable {
            limits,
            entries: HashMap::new(),
            sweep_at: MIN_SWEEP,
        }
    }

    /// Whether any limit is on; with none, no address is tracked at all.
    fn tracking(&self) -> bool {
        self.limits.max_per_ip > 0 || self.limits.new_per_ip > 0
    }

    /// Tokens refilled per second.
    fn rate(&self) -> f64 {
        f64::from(self.limits.new_per_ip) / self.limits.window.as_secs_f64().max(1e-9)
    }

    /// Brings an entry's bucket up to `now`.
    fn refill(limits: &ConnLimits, rate: f64, entry: &mut Entry, now: Instant) {
        let elapsed = now.saturating_duration_since(entry.refreshed).as_secs_f64();
        entry.tokens = (entry.tokens + elapsed * rate).min(f64::from(limits.new_per_ip));
        entry.refreshed = now;
    }

    /// Counts a new connection from `ip` if its address is within the limits.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if !self.tracking() {
            return Ok(());
        }
        if self.entries.len() >= self.sweep_at {
            self.sweep(now);
            self.sweep_at = (self.entries.len() * 2).max(MIN_SWEEP);
        }
        let limits = self.limits;
        let rate = self.rate();
        let entry = self.entries.entry(ip).or_insert(Entry {
            open: 0,
            tokens: f64::from(limits.new_per_ip),
            refreshed: now,
        });
        Self::refill(&limits, rate, entry, now);
        let refusal = if limits.max_per_ip > 0 && entry.open >= limits.max_per_ip {
            Some(Refusal::TooManyOpen)
        } else if limits.new_per_ip > 0 && entry.tokens < 1.0 {
            Some(Refusal::TooManyNew)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // A refused attempt holds no connection; an entry created just for it (possible
            // only with a zero-sized bucket) must not stay behind.
            if entry.open == 0 && Self::idle(&limits, entry) {
                self.entries.remove(&ip);
            }
            return Err(refusal);
        }
        entry.open += 1;
        if limits.new_per_ip > 0 {
            entry.tokens -= 1.0;
        }
        Ok(())
    }

    /// Counts a connection from `ip` as closed.
    pub fn release(&mut self, ip: IpAddr, now: Instant) {
        let limits = self.limits;
        let rate = self.rate();
        if let Some(entry) = self.entries.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
            Self::refill(&limits, rate, entry, now);
            if entry.open == 0 && Self::idle(&limits, entry) {
                self.entries.remove(&ip);
            }
        }
    }

    /// Whether an entry's bucket is full (as of its last refill), so it carries nothing a
    /// fresh entry would not.
    fn idle(limits: &ConnLimits, entry: &Entry) -> bool {
        limits.new_per_ip == 0 || entry.tokens >= f64::from(limits.new_per_ip)
    }

    /// Drops the entries of addresses with nothing open and a full bucket.
    pub fn sweep(&mut self, now: Instant) {
        let limits = self.limits;
        let rate = self.rate();
        self.entries.retain(|_, entry| {
            Self::refill(&limits, rate, entry, now);
            entry.open > 0 || !Self::idle(&limits, entry)
        });
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The table shared by the accept loop (which admits) and the connection tasks (whose [`Slot`]s
/// release when they end). The lock is held only for a table operation, never across `.await`.
pub struct Gate {
    table: Mutex<AddrTable>,
    /// Where the gauges of open connections and tracked addresses are kept for metrics and the
    /// admin interface.
    stats: Arc<EdgeStats>,
    limits: ConnLimits,
}

impl Gate {
    /// A gate enforcing `limits`, keeping its gauges in `stats`.
    pub fn new(limits: ConnLimits, stats: Arc<EdgeStats>) -> Arc<Gate> {
        Arc::new(Gate {
            table: Mutex::new(AddrTable::new(limits)),
            stats,
            limits,
        })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn table(&self) -> MutexGuard<'_, AddrTable> {
        // A panic elsewhere while holding the lock leaves counts that are at worst off by one;
        // refusing every connection from then on would be worse.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `ip`, or says why not. The slot counts it as open until dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        // IPv4 clients of a dual-stack listener ([::]) arrive as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        let mut table = self.table();
        table.admit(ip, Instant::now())?;
        let stats = &self.stats;
        stats
            .tracked_addresses
            .store(table.len() as u64, Ordering::Relaxed);
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            gate: Arc::clone(self),
            ip,
        })
    }

    /// Forgets idle addresses (called now and then, so that the table shrinks after a burst even
    /// when nobody connects).
    pub fn sweep(&self) {
        let mut table = self.table();
        table.sweep(Instant::now());
        self.stats
            .tracked_addresses
            .store(table.len() as u64, Ordering::Relaxed);
    }
}

/// An admitted connection's place in the table: dropping it (when the connection's task ends,
/// however it ends) counts the connection as closed.
pub struct Slot {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.gate.table();
        table.release(self.ip, Instant::now());
        let stats = &self.gate.stats;
        stats
            .tracked_addresses
            .store(table.len() as u64, Ordering::Relaxed);
        stats.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The wait after a failed `accept`: doubling from `first` up to `cap`, back to `first` once an
/// accept succeeds. Out of file descriptors, `accept` fails at once every time it is tried, so
/// retrying without a growing wait would spin a core and flood the log.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    failures: u64,
}

impl Backoff {
    /// Starts at `first`, never waits longer than `cap`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first,
            failures: 0,
        }
    }

    /// An accept failed: how long to wait before the next one.
    pub fn fail(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.failures += 1;
        wait
    }

    /// An accept succeeded: how many had failed in a row before it (0 if none).
    pub fn succeed(&mut self) -> u64 {
        self.next = self.first;
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn limits(max_per_ip: u32, new_per_ip: u32) -> ConnLimits {
        ConnLimits {
            max_per_ip,
            new_per_ip,
            window: Duration::from_secs(1),
        }
    }

    #[test]
    fn open_connections_per_address_are_capped_and_freed_on_release() {
        let mut t = AddrTable::new(limits(2, 0));
        let now = Instant::now();
        assert_eq!(t.admit(ip(1), now), Ok(()));
        assert_eq!(t.admit(ip(1), now), Ok(()));
        assert_eq!(t.admit(ip(1), now), Err(Refusal::TooManyOpen));
        assert_eq!(
            t.admit(ip(2), now),
            Ok(()),
            "other addresses are not affected"
        );
        t.release(ip(1), now);
        assert_eq!(t.admit(ip(1), now), Ok(()));
    }

    #[test]
    fn new_connections_per_window_refill_with_time() {
        let mut t = AddrTable::new(limits(0, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.admit(ip(1), t0), Ok(()));
            t.release(ip(1), t0);
        }
        assert_eq!(t.admit(ip(1), t0), Err(Refusal::TooManyNew));
        // A third of the window refills one token.
        let later = t0 + Duration::from_millis(340);
        assert_eq!(t.admit(ip(1), later), Ok(()));
        assert_eq!(t.admit(ip(1), later), Err(Refusal::TooManyNew));
        // The bucket never holds more than its size.
        let much_later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(t.admit(ip(1), much_later), Ok(()));
        }
        assert_eq!(t.admit(ip(1), much_later), Err(Refusal::TooManyNew));
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let mut t = AddrTable::new(limits(4, 2));
        let t0 = Instant::now();
        t.admit(ip(1), t0).unwrap();
        t.admit(ip(2), t0).unwrap();
        t.release(ip(2), t0);
        assert_eq!(t.len(), 2, "ip 2's bucket is still refilling");
        t.sweep(t0 + Duration::from_secs(1));
        assert_eq!(
            t.len(),
            1,
            "ip 2 is idle once its bucket is full; ip 1 is still open"
        );
        t.release(ip(1), t0 + Duration::from_secs(2));
        assert!(
            t.is_empty(),
            "the last release of a full bucket drops the entry"
        );
    }

    #[test]
    fn without_limits_nothing_is_tracked() {
        let mut t = AddrTable::new(limits(0, 0));
        let now = Instant::now();
        for i in 0..=255 {
            assert_eq!(t.admit(ip(i), now), Ok(()));
        }
        assert!(t.is_empty());
    }

    #[test]
    fn a_flood_of_fresh_addresses_keeps_the_table_bounded() {
        // One connection each from a million addresses, a thousand per millisecond, each closed
        // at once: the table never holds more than the sweep threshold plus what one window of
        // arrivals leaves refilling.
        let mut t = AddrTable::new(limits(8, 8));
        let t0 = Instant::now();
        let mut largest = 0;
        for i in 0u32..1_000_000 {
            let now = t0 + Duration::from_micros(u64::from(i));
            let addr = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + 1));
            t.admit(addr, now).unwrap();
            t.release(addr, now);
            largest = largest.max(t.len());
        }
        // 1 s window at one arrival per µs: up to a million entries could be refilling, but a
        // new entry's bucket refills its one token in 1/8 s, so at most 125,000 are live; the
        // sweep threshold doubles past that at most once.
        assert!(
            largest <= 2 * 125_000 + MIN_SWEEP,
            "table grew to {largest}"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..6).map(|_| b.fail().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.succeed(), 6);
        assert_eq!(b.fail(), Duration::from_millis(100));
    }
}
