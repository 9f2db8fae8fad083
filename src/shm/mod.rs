//! Memory shared by every nginx worker, owned by Rust.
//!
//! The region is mapped `MAP_SHARED | MAP_ANONYMOUS` the first time
//! `new()` runs, which must be in `init_by_lua` (in nginx's master, before
//! it forks the workers). Every worker inherits the mapping, so atomics on
//! it are seen by all of them. The mapping lives in a static of this
//! library, which nginx keeps loaded across `nginx -s reload`, so it
//! survives reloads; a full restart starts afresh.
//!
//! It holds what every request must read or write without taking a lock:
//! the sequence numbers of each shared dict's block journal (the one
//! home of the journal's sequence: a writer takes a number here, and a
//! worker learns with one atomic load that it must sync) and per-worker
//! statistics counters.

pub mod lock;

use std::sync::atomic::{AtomicU64, Ordering};

use once_cell::sync::OnceCell;

use crate::metrics::Stat;

/// Most distinct `dict` names (warden instances) per nginx.
pub const MAX_DICTS: usize = 16;
/// Most worker ids (`ngx.worker.id()`) with their own counters; higher ids
/// share the last slot.
pub const MAX_WORKERS: usize = 64;

/// Per-worker statistics counters, indexed by [`Stat`].
#[repr(C, align(64))]
pub struct WorkerStats {
    counters: [AtomicU64; Stat::COUNT],
}

impl WorkerStats {
    /// Adds one to a counter. Each worker writes its own cache line, so a
    /// plain load and store is enough (a reload can briefly run two workers
    /// with one id; they may then lose a count, never corrupt one).
    #[inline]
    pub fn incr(&self, s: Stat) {
        let c = &self.counters[s as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Adds `n` to a counter (see [`WorkerStats::incr`]).
    #[inline]
    pub fn add(&self, s: Stat, n: u64) {
        let c = &self.counters[s as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Takes one from a counter (see [`WorkerStats::incr`]).
    #[inline]
    pub fn decr(&self, s: Stat) {
        let c = &self.counters[s as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
    }

    fn get(&self, s: Stat) -> u64 {
        self.counters[s as usize].load(Ordering::Relaxed)
    }
}

/// The journal sequence of one shared dict: the numbers taken by writers
/// and the newest one published.
///
/// A writer takes a number ([`DictSlot::take`]), writes its journal entry
/// under it, then publishes it ([`DictSlot::publish`]); readers replay up
/// to [`DictSlot::version`], so they never look for an entry before its
/// writer is done with it (an entry taken later but published first makes
/// a reader find the earlier one missing, and re-read every block).
#[repr(C, align(64))]
pub struct DictSlot {
    name_hash: AtomicU64,
    version: AtomicU64,
    taken: AtomicU64,
}

impl DictSlot {
    /// The newest journal sequence number any worker has published.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Takes the next sequence number: above every number taken or
    /// published before, never reused.
    pub fn take(&self) -> u64 {
        let mut cur = self.taken.load(Ordering::Acquire);
        loop {
            let next = cur.max(self.version()) + 1;
            match self
                .taken
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(now) => cur = now,
            }
        }
    }

    /// Publishes sequence number `seq` (never moves backwards).
    pub fn publish(&self, seq: u64) {
        self.version.fetch_max(seq, Ordering::AcqRel);
    }
}

/// The shared region's layout.
#[repr(C)]
pub struct Region {
    magic: u64,
    dicts: [DictSlot; MAX_DICTS],
    workers: [WorkerStats; MAX_WORKERS],
}

const MAGIC: u64 = 0x5741_5244_454e_0001;

static REGION: OnceCell<usize> = OnceCell::new();

/// Maps `size` zero-filled bytes shared with every process forked after
/// this call (`MAP_SHARED | MAP_ANONYMOUS`). The mapping is never unmapped.
pub fn map_shared(size: usize, what: &str) -> Result<*mut libc::c_void, String> {
    // SAFETY: an anonymous shared mapping with no address hint; the
    // result is checked for MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "cannot map {size} bytes of shared memory for {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
    if size >= 2 << 20 {
        // Large tables are read at random: huge pages save a TLB miss per
        // request where the kernel allows them for shared memory
        // (/sys/kernel/mm/transparent_hugepage/shmem_enabled = advise).
        // SAFETY: advice on the mapping made above; failure is harmless.
        unsafe { libc::madvise(p, size, libc::MADV_HUGEPAGE) };
    }
    Ok(p)
}

struct Kept {
    name: String,
    size: usize,
    shape: u64,
    addr: usize,
    /// Live objects of this process using the mapping.
    users: usize,
    /// The mapping a new object of this name would get.
    current: bool,
}

static KEPT: std::sync::Mutex<Vec<Kept>> = std::sync::Mutex::new(Vec::new());

/// Like [`map_shared`], but remembered by `name`: a later call in the same
/// process (nginx's master re-running `init_by_lua` on `nginx -s reload`)
/// with the same name, size and `shape` gets the same memory back, so its
/// contents survive the reload. With another size or shape a new mapping
/// is made, and the old one is unmapped once no object of this process
/// uses it (see [`release_shared`]); workers forked earlier keep theirs
/// until they exit.
pub fn keep_shared(
    name: &str,
    size: usize,
    shape: u64,
    what: &str,
) -> Result<*mut libc::c_void, String> {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = kept
        .iter_mut()
        .find(|k| k.current && k.name == name && k.size == size && k.shape == shape)
    {
        k.users += 1;
        return Ok(k.addr as *mut libc::c_void);
    }
    let p = map_shared(size, what)?;
    for k in kept.iter_mut().filter(|k| k.name == name) {
        k.current = false;
    }
    unmap_unused(&mut kept);
    kept.push(Kept {
        name: name.to_string(),
        size,
        shape,
        addr: p as usize,
        users: 1,
        current: true,
    });
    Ok(p)
}

/// Tells that an object using a mapping from [`keep_shared`] is gone.
pub fn release_shared(addr: *mut libc::c_void) {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = kept.iter_mut().find(|k| k.addr == addr as usize) {
        k.users = k.users.saturating_sub(1);
    }
    unmap_unused(&mut kept);
}

fn unmap_unused(kept: &mut Vec<Kept>) {
    kept.retain(|k| {
        if k.current || k.users > 0 {
            return true;
        }
        // SAFETY: a mapping made by map_shared for keep_shared that no
        // live object of this process uses and no new one will get.
        unsafe { libc::munmap(k.addr as *mut libc::c_void, k.size) };
        false
    });
}

/// The shared region, mapped on first use.
///
/// Returns an error if the kernel refuses the mapping.
pub fn region() -> Result<&'static Region, String> {
    let addr = REGION.get_or_try_init(|| {
        let p = map_shared(std::mem::size_of::<Region>(), "warden's counters")?;
        let r = p as *mut Region;
        // SAFETY: the mapping is zero-filled, page aligned and large enough
        // for `Region`, whose fields are all atomics or integers for which
        // zero is a valid value.
        unsafe { (*r).magic = MAGIC };
        Ok::<usize, String>(p as usize)
    })?;
    // SAFETY: the mapping is never unmapped, so the reference is 'static;
    // all shared fields are atomics.
    Ok(unsafe { &*(*addr as *const Region) })
}

fn hash_name(name: &str) -> u64 {
    // FNV-1a, never zero (zero marks a free slot).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

impl Region {
    /// The journal slot of shared dict `name`, claimed on first use.
    pub fn dict_slot(&'static self, name: &str) -> Result<&'static DictSlot, String> {
        let h = hash_name(name);
        for slot in self.dicts.iter() {
            match slot
                .name_hash
                .compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(slot),
                Err(cur) if cur == h => return Ok(slot),
                Err(_) => continue,
            }
        }
        Err(format!(
            "more than {MAX_DICTS} distinct shared dicts used by warden instances"
        ))
    }

    /// The counters of worker `id` (ids past the table share the last slot).
    pub fn worker(&'static self, id: usize) -> &'static WorkerStats {
        &self.workers[id.min(MAX_WORKERS - 1)]
    }

    /// Sums a counter over every worker.
    pub fn total(&self, s: Stat) -> u64 {
        self.workers.iter().map(|w| w.get(s)).sum()
    }

    /// Size of the mapping in bytes.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Region>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_counters() {
        let r = region().unwrap();
        assert_eq!(r.magic, MAGIC);
        let a = r.dict_slot("test-a").unwrap();
        let b = r.dict_slot("test-b").unwrap();
        assert!(!std::ptr::eq(a, b));
        assert!(std::ptr::eq(a, r.dict_slot("test-a").unwrap()));
        a.publish(5);
        a.publish(3);
        assert_eq!(a.version(), 5);
        // numbers taken are above everything published, and never reused
        assert_eq!(a.take(), 6);
        assert_eq!(a.take(), 7);
        a.publish(7);
        a.publish(10);
        assert_eq!(a.take(), 11);
        let before = r.total(Stat::DictFull);
        r.worker(1000).incr(Stat::DictFull);
        r.worker(0).incr(Stat::DictFull);
        assert_eq!(r.total(Stat::DictFull), before + 2);
    }

    #[test]
    fn kept_mappings_are_reused_and_replaced() {
        let a = keep_shared("t-keep", 4096, 1, "test").unwrap();
        let b = keep_shared("t-keep", 4096, 1, "test").unwrap();
        assert_eq!(a, b);
        // another shape: a new mapping; the old one stays while used
        let c = keep_shared("t-keep", 4096, 2, "test").unwrap();
        assert_ne!(a, c);
        let users = |p: *mut libc::c_void| {
            KEPT.lock()
                .unwrap()
                .iter()
                .find(|k| k.addr == p as usize)
                .map(|k| k.users)
        };
        assert_eq!(users(a), Some(2));
        release_shared(a);
        release_shared(b);
        assert_eq!(users(a), None); // unmapped
        assert_eq!(users(c), Some(1));
        release_shared(c);
        assert_eq!(users(c), Some(0)); // current: kept for the next user
        assert_eq!(keep_shared("t-keep", 4096, 2, "test").unwrap(), c);
    }

    #[test]
    fn shared_across_fork() {
        let r = region().unwrap();
        let slot = r.dict_slot("test-fork").unwrap();
        let before = slot.version();
        // SAFETY: the child only touches atomics and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            slot.publish(before + 42);
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(slot.version(), before + 42);
    }
}
