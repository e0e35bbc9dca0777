//! The keyspace: keys, their values and deadlines, the memory estimate, and
//! the two things that delete keys behind a client's back: expiry and
//! eviction.
//!
//! Keys live in an `IndexMap`, a hash table whose entries are also a dense
//! vector, because both Redis algorithms that need "a random key" (the
//! active expiry cycle and the sampled LRU) need it in O(1): `get_index`
//! with a random number. A plain `HashMap` cannot give one. Keys with a
//! deadline are also kept in an `IndexSet`, as Redis keeps its `expires`
//! dictionary, so the expiry cycle samples only keys that can expire.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::{IndexMap, IndexSet};

/// A value: the three types this server has.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    Hash(HashMap<Vec<u8>, Vec<u8>>),
    List(VecDeque<Vec<u8>>),
}

impl Value {
    /// What `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
        }
    }
}

/// One key's record.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Value,
    /// Absolute deadline, milliseconds since the Unix epoch: absolute so
    /// that a replica and a snapshot agree with the primary.
    pub expire_at: Option<u64>,
    /// The access clock when it was last touched, for the sampled LRU.
    pub lru: u64,
}

/// The estimated bytes of one entry's bookkeeping (the table slot, the
/// record, allocator headers), as Redis counts its `dictEntry` and
/// `robj` in `used_memory_dataset`.
pub const ENTRY_OVERHEAD: usize = 64;
/// The bookkeeping of one hash field or list element.
pub const ELEMENT_OVERHEAD: usize = 24;

/// The estimated bytes a value holds.
pub fn value_cost(value: &Value) -> usize {
    match value {
        Value::Str(s) => s.len(),
        Value::Hash(h) => h.iter().map(|(k, v)| field_cost(k, v)).sum(),
        Value::List(l) => l.iter().map(|v| element_cost(v)).sum(),
    }
}

/// The estimated bytes of one hash field.
pub fn field_cost(field: &[u8], value: &[u8]) -> usize {
    field.len() + value.len() + ELEMENT_OVERHEAD
}

/// The estimated bytes of one list element.
pub fn element_cost(value: &[u8]) -> usize {
    value.len() + ELEMENT_OVERHEAD
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What `maxmemory` does when a write would pass it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Refuse writes with `-OOM` (deletions still work).
    NoEviction,
    /// Evict the least recently used of a few sampled keys, until under.
    AllKeysLru,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
        }
    }

    pub fn parse(s: &str) -> Result<Policy, String> {
        match s {
            "noeviction" => Ok(Policy::NoEviction),
            "allkeys-lru" => Ok(Policy::AllKeysLru),
            _ => Err("expected noeviction or allkeys-lru".into()),
        }
    }
}

/// Keys sampled per eviction, as Redis's `maxmemory-samples` default.
const LRU_SAMPLES: usize = 5;

/// Keys sampled per round of the active expiry cycle
/// (`ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP`).
const EXPIRE_SAMPLES: usize = 20;

/// The keyspace and its counters.
#[derive(Debug)]
pub struct Db {
    map: IndexMap<Vec<u8>, Entry>,
    expires: IndexSet<Vec<u8>>,
    /// Estimated bytes of keys, values and bookkeeping.
    pub used: usize,
    /// Bumped by every write: `WATCH` compares it (a coarse watch: any
    /// write aborts the transaction, which is safe, if pessimistic).
    pub dirty: u64,
    clock: u64,
    rng: u64,
    pub expired_keys: u64,
    pub evicted_keys: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Db {
    pub fn new() -> Db {
        Db {
            map: IndexMap::new(),
            expires: IndexSet::new(),
            used: 0,
            dirty: 0,
            clock: 0,
            rng: unix_ms() | 1,
            expired_keys: 0,
            evicted_keys: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn expires_len(&self) -> usize {
        self.expires.len()
    }

    fn random(&mut self, below: usize) -> usize {
        // xorshift64: fast and good enough to sample keys.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % below as u64) as usize
    }

    /// The bookkeeping of a key of its own (the value not included).
    #[cfg(test)]
    pub fn new_entry_cost(key: &[u8], with_deadline: bool) -> usize {
        Self::key_cost(key, with_deadline)
    }

    fn key_cost(key: &[u8], with_deadline: bool) -> usize {
        // A key with a deadline is stored twice (as Redis's `expires`).
        ENTRY_OVERHEAD + key.len() * if with_deadline { 2 } else { 1 }
    }

    /// Is the key there and alive at `now`? A dead key is deleted (lazy
    /// expiry) and reported in `expired`, so that a primary can send its
    /// replicas a `DEL`.
    fn expire_if_due(&mut self, key: &[u8], now: u64, expired: &mut Vec<Vec<u8>>) -> bool {
        match self.map.get(key) {
            None => false,
            Some(e) if e.expire_at.is_some_and(|t| t <= now) => {
                self.remove(key);
                self.expired_keys += 1;
                expired.push(key.to_vec());
                false
            }
            Some(_) => true,
        }
    }

    /// The live entry of `key`, touched for the LRU.
    pub fn get(&mut self, key: &[u8], now: u64, expired: &mut Vec<Vec<u8>>) -> Option<&mut Entry> {
        if !self.expire_if_due(key, now, expired) {
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        self.clock += 1;
        let clock = self.clock;
        let entry = self.map.get_mut(key)?;
        entry.lru = clock;
        Some(entry)
    }

    /// The live entry of `key` for a write: like [`get`](Db::get) without
    /// counting a hit or miss. Callers that change the value's size report
    /// it with [`grow`](Db::grow) / [`shrink`](Db::shrink).
    pub fn get_mut(
        &mut self,
        key: &[u8],
        now: u64,
        expired: &mut Vec<Vec<u8>>,
    ) -> Option<&mut Entry> {
        if !self.expire_if_due(key, now, expired) {
            return None;
        }
        self.clock += 1;
        let clock = self.clock;
        let entry = self.map.get_mut(key)?;
        entry.lru = clock;
        Some(entry)
    }

    pub fn grow(&mut self, bytes: usize) {
        self.used += bytes;
    }

    pub fn shrink(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Sets `key` to `value` with `expire_at`, replacing whatever was there.
    pub fn set(&mut self, key: &[u8], value: Value, expire_at: Option<u64>) {
        self.remove(key);
        self.insert(key.to_vec(), value, expire_at);
    }

    /// Inserts a key known to be absent.
    pub fn insert(&mut self, key: Vec<u8>, value: Value, expire_at: Option<u64>) {
        self.used += Self::key_cost(&key, expire_at.is_some()) + value_cost(&value);
        if expire_at.is_some() {
            self.expires.insert(key.clone());
        }
        self.clock += 1;
        self.map.insert(
            key,
            Entry {
                value,
                expire_at,
                lru: self.clock,
            },
        );
    }

    /// Changes the deadline of a present key.
    pub fn set_expire(&mut self, key: &[u8], expire_at: Option<u64>) {
        let Some(entry) = self.map.get_mut(key) else {
            return;
        };
        let had = entry.expire_at.is_some();
        entry.expire_at = expire_at;
        match (had, expire_at.is_some()) {
            (false, true) => {
                self.expires.insert(key.to_vec());
                self.used += key.len();
            }
            (true, false) => {
                self.expires.swap_remove(key);
                self.shrink(key.len());
            }
            _ => {}
        }
    }

    /// Removes a key; true if it was there (alive or not).
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.swap_remove(key) {
            Some(entry) => {
                if entry.expire_at.is_some() {
                    self.expires.swap_remove(key);
                }
                self.shrink(
                    Self::key_cost(key, entry.expire_at.is_some()) + value_cost(&entry.value),
                );
                true
            }
            None => false,
        }
    }

    /// Removes a key whose value became empty (a list or hash with no
    /// element left), as Redis does.
    pub fn remove_if_empty(&mut self, key: &[u8]) {
        let empty = match self.map.get(key).map(|e| &e.value) {
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::List(l)) => l.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(key);
        }
    }

    pub fn clear(&mut self) {
        self.map = IndexMap::new();
        self.expires = IndexSet::new();
        self.used = 0;
    }

    /// The key at `index` (for `SCAN`), and whether it is alive at `now`.
    pub fn key_at(&self, index: usize, now: u64) -> Option<(&[u8], bool, &'static str)> {
        self.map.get_index(index).map(|(k, e)| {
            (
                k.as_slice(),
                e.expire_at.is_none_or(|t| t > now),
                e.value.type_name(),
            )
        })
    }

    /// Every live key, its entry.
    pub fn iter(&self, now: u64) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map
            .iter()
            .filter(move |(_, e)| e.expire_at.is_none_or(|t| t > now))
            .map(|(k, e)| (k.as_slice(), e))
    }

    /// One turn of the active expiry cycle, as Redis's
    /// `activeExpireCycle`: sample [`EXPIRE_SAMPLES`] keys that have a
    /// deadline, delete the dead ones, and go again while more than a
    /// quarter of a sample was dead, up to `max_samples` keys in all. So a
    /// million keys expiring at once are deleted over many turns, each of
    /// bounded work, and never stall the loop. The deleted keys are pushed
    /// on `expired`.
    pub fn expire_cycle(&mut self, now: u64, max_samples: usize, expired: &mut Vec<Vec<u8>>) {
        let mut sampled = 0;
        while sampled < max_samples && !self.expires.is_empty() {
            let mut dead = 0;
            for _ in 0..EXPIRE_SAMPLES.min(self.expires.len()) {
                let i = self.random(self.expires.len());
                let key = self.expires[i].clone();
                sampled += 1;
                if !self.expire_if_due(&key, now, expired) {
                    dead += 1;
                }
                if self.expires.is_empty() {
                    break;
                }
            }
            if dead * 4 <= EXPIRE_SAMPLES {
                break;
            }
        }
    }

    /// Evicts sampled least-recently-used keys until `used <= limit` (the
    /// `allkeys-lru` policy); the evicted keys are pushed on `evicted`.
    /// False if the keyspace is empty and still over (nothing left to
    /// evict).
    pub fn evict_to(&mut self, limit: usize, evicted: &mut Vec<Vec<u8>>) -> bool {
        while self.used > limit {
            if self.map.is_empty() {
                return false;
            }
            let mut best: Option<(usize, u64)> = None;
            for _ in 0..LRU_SAMPLES.min(self.map.len()) {
                let i = self.random(self.map.len());
                let lru = self.map[i].lru;
                if best.is_none_or(|(_, b)| lru < b) {
                    best = Some((i, lru));
                }
            }
            let Some((i, _)) = best else { return false };
            let key = self
                .map
                .get_index(i)
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            self.remove(&key);
            self.evicted_keys += 1;
            evicted.push(key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_estimate_returns_to_zero() {
        let mut db = Db::new();
        db.set(b"a", Value::Str(b"hello".to_vec()), Some(u64::MAX));
        db.set(b"b", Value::Str(b"x".to_vec()), None);
        db.set_expire(b"b", Some(u64::MAX));
        db.set_expire(b"a", None);
        assert!(db.used > 0);
        db.remove(b"a");
        db.remove(b"b");
        assert_eq!(db.used, 0);
    }

    #[test]
    fn expiry_cycle_is_bounded_per_turn() {
        let mut db = Db::new();
        for i in 0..10_000u32 {
            db.set(&i.to_be_bytes(), Value::Str(vec![]), Some(1));
        }
        let mut expired = Vec::new();
        db.expire_cycle(2, 200, &mut expired);
        assert!(expired.len() <= 200 && !expired.is_empty());
    }
}
