//! The job table and the id index: where jobs live, and how an id finds its job.
//!
//! The table is a slab of entries addressed by [`Key`]s; the index, shared with the handles,
//! maps each job id to its key and hands out keys for new jobs. Both change only through the
//! core's commit point (and the handles' index updates, sent in the same order to the core), so
//! they always agree once the core has taken every command sent.
//!
//! A job costs one 128-byte slot: a scheduler may hold a million.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::job::{RunControl, TaskBody};
use crate::trigger::Trigger;
use crate::{Job, JobId, JobOptions, MisfireGrace, Task, Zone};

/// A job's key: a slot of the job table, that slot's generation, and the job's store.
///
/// A slot is reused only after its entry is gone, and then under the next generation, so a
/// command still holding an old key finds nothing, never a newer job in the same slot. The
/// store travels in the key so that a handle knows, without asking the core, whether a change
/// must be written to a database first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key(u64);

/// Which store a job lives in: 0 is the memory store, then the durable stores in the order
/// the builder added them.
pub(crate) type StoreIndex = u8;

impl Key {
    // The one place the layout is written: the slot in the low 32 bits, then the tag (the
    // store in its top 8 bits, the generation in its low 24). Generations wrap; a key is stale
    // long before its slot comes round 16 million reuses later.
    const GENERATIONS: u32 = 1 << 24;

    fn new(slot: u32, generation: u32, store: StoreIndex) -> Key {
        let tag = (u32::from(store) << 24) | (generation % Key::GENERATIONS);
        Key(u64::from(slot) | (u64::from(tag) << 32))
    }

    fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    /// The store and the generation, as the table's slot keeps them.
    fn tag(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn generation(self) -> u32 {
        self.tag() % Key::GENERATIONS
    }

    /// The job's store.
    pub(crate) fn store(self) -> StoreIndex {
        (self.tag() >> 24) as StoreIndex
    }

    /// The slot under its next generation (for whichever store reuses it).
    fn next_generation(self) -> (u32, u32) {
        (self.slot() as u32, self.generation().wrapping_add(1))
    }
}

/// Job ids to the keys of the core's entries, and the keys free for new jobs. Shared by the
/// handles (which enter and remove ids) and the core (which releases keys it no longer holds).
#[derive(Default)]
pub(crate) struct Index {
    /// foldhash, not SipHash: hashing ids was a sixth of an add's cost, and foldhash is seeded
    /// per map, so chosen ids cannot flood one bucket.
    ids: HashMap<JobId, Key, foldhash::fast::RandomState>,
    /// Freed slots, with the generation each is reused under.
    free: Vec<(u32, u32)>,
    next_slot: u32,
}

impl Index {
    pub(crate) fn key_of(&self, id: &str) -> Option<Key> {
        self.ids.get(id).copied()
    }

    /// How many ids the index holds.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Enters a new job's id under a fresh key (a freed slot's next generation, or a new slot)
    /// and returns the key the id named before, if any; `None` (and no change) when the id is
    /// taken and `replace` is not set. One hash of the id either way.
    pub(crate) fn enter(
        &mut self,
        id: JobId,
        store: StoreIndex,
        replace: bool,
    ) -> Option<(Key, Option<Key>)> {
        let (free, next_slot) = (&mut self.free, &mut self.next_slot);
        let mut fresh = || {
            let (slot, generation) = free.pop().unwrap_or_else(|| {
                let slot = *next_slot;
                // Four billion jobs cannot fit in memory before this wraps.
                *next_slot = next_slot.wrapping_add(1);
                (slot, 0)
            });
            Key::new(slot, generation, store)
        };
        match self.ids.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) if !replace => None,
            std::collections::hash_map::Entry::Occupied(mut taken) => {
                let key = fresh();
                Some((key, Some(taken.insert(key))))
            }
            std::collections::hash_map::Entry::Vacant(free_id) => {
                let key = fresh();
                free_id.insert(key);
                Some((key, None))
            }
        }
    }

    /// Takes an id out; its job's key is released by the core once it has dropped the job.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Key> {
        self.ids.remove(id)
    }

    /// Puts an id back under `key` unless it names another job by now: a durable add or
    /// replacement whose write failed gives the id back to the job it had.
    pub(crate) fn restore(&mut self, id: JobId, key: Key) {
        self.ids.entry(id).or_insert(key);
    }

    /// Called by the core once it holds no entry under `key`: frees the slot, and drops the id
    /// unless it already names a newer job.
    pub(crate) fn release(&mut self, key: Key, id: &JobId) {
        // One probe in the usual case (the id still names this key).
        if let Some((named, newer)) = self.ids.remove_entry(id) {
            if newer != key {
                self.ids.insert(named, newer);
            }
        }
        self.free.push(key.next_generation());
    }
}

/// The next run of a job: the trigger's fire time, and the jitter added to it (in whole
/// milliseconds, so the pair fits in 16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NextRun {
    pub(crate) regular: DateTime<Utc>,
    jitter_ms: u32,
}

impl NextRun {
    /// The run at `regular`, delayed by the trigger's jitter.
    pub(crate) fn jittered(trigger: &Trigger, regular: DateTime<Utc>) -> NextRun {
        NextRun::new(regular, trigger.jittered(regular))
    }

    pub(crate) fn new(regular: DateTime<Utc>, at: DateTime<Utc>) -> NextRun {
        let jitter_ms = (at - regular)
            .num_milliseconds()
            .clamp(0, i64::from(u32::MAX));
        NextRun {
            regular,
            jitter_ms: jitter_ms as u32,
        }
    }

    /// When it runs.
    pub(crate) fn at(self) -> DateTime<Utc> {
        if self.jitter_ms == 0 {
            return self.regular;
        }
        self.regular
            .checked_add_signed(TimeDelta::milliseconds(i64::from(self.jitter_ms)))
            .unwrap_or(self.regular)
    }
}

/// [`JobOptions`] in 16 bytes: the grace time in whole milliseconds (`u64::MAX`: unlimited).
/// A scheduler may hold a million entries; this keeps each one a cache line smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admission {
    grace_ms: u64,
    pub(crate) max_instances: u32,
    pub(crate) coalesce: bool,
    retry_abandoned: bool,
}

impl Admission {
    /// How late a run may start, `None` for however late.
    pub(crate) fn grace(self) -> Option<TimeDelta> {
        (self.grace_ms != u64::MAX).then(|| {
            i64::try_from(self.grace_ms)
                .ok()
                .and_then(TimeDelta::try_milliseconds)
                .unwrap_or(TimeDelta::MAX)
        })
    }

    pub(crate) fn set_grace(&mut self, grace: MisfireGrace) {
        self.grace_ms = match grace {
            MisfireGrace::Unlimited => u64::MAX,
            MisfireGrace::Within(g) => u64::try_from(g.as_millis()).unwrap_or(u64::MAX - 1),
        };
    }
}

impl From<JobOptions> for Admission {
    fn from(options: JobOptions) -> Admission {
        let mut admission = Admission {
            grace_ms: 0,
            max_instances: options.max_instances,
            coalesce: options.coalesce,
            retry_abandoned: options.retry_abandoned,
        };
        admission.set_grace(options.misfire_grace_time);
        admission
    }
}

impl From<Admission> for JobOptions {
    fn from(admission: Admission) -> JobOptions {
        let grace = if admission.grace_ms == u64::MAX {
            MisfireGrace::Unlimited
        } else {
            MisfireGrace::Within(Duration::from_millis(admission.grace_ms))
        };
        JobOptions::default()
            .misfire_grace_time(grace)
            .coalesce(admission.coalesce)
            .max_instances(admission.max_instances)
            .retry_abandoned(admission.retry_abandoned)
    }
}

/// One job as the core holds it. Kept small: a scheduler may hold a million.
pub(crate) struct Entry {
    pub(crate) id: JobId,
    pub(crate) task: Box<dyn TaskBody>,
    pub(crate) trigger: Trigger,
    pub(crate) options: Admission,
    /// `None` exactly while paused (a job with no next run is removed). A due-queue item is
    /// current only while it matches `next.at()`.
    pub(crate) next: Option<NextRun>,
    /// What few jobs have (a name given with `.name(..)`, a timeout, a retry policy), behind
    /// one thin pointer: a job without them pays 8 bytes, not 16 for the name alone.
    extras: Option<Box<Extras>>,
}

#[derive(Default)]
struct Extras {
    name: Option<Arc<str>>,
    run: Option<RunControl>,
    /// Its trigger has no fire time left, and it stays only until its run's last attempt
    /// has ended (a retry needs its task).
    finished: bool,
}

impl Entry {
    pub(crate) fn new(
        id: JobId,
        name: Option<Arc<str>>,
        task: Task,
        trigger: Trigger,
        options: JobOptions,
        next: Option<NextRun>,
    ) -> Entry {
        let mut entry = Entry {
            id,
            task: task.into_body(),
            trigger,
            options: Admission::from(options),
            next,
            extras: None,
        };
        entry.set_extras(name, options.run_control());
        entry
    }

    fn set_extras(&mut self, name: Option<Arc<str>>, run: Option<RunControl>) {
        let finished = self.is_finished();
        self.extras = (name.is_some() || run.is_some() || finished).then(|| {
            Box::new(Extras {
                name,
                run,
                finished,
            })
        });
    }

    /// Whether the job waits only for its run's last attempt before it goes (see
    /// [`finish_after_run`](Self::finish_after_run)).
    pub(crate) fn is_finished(&self) -> bool {
        self.extras.as_ref().is_some_and(|extras| extras.finished)
    }

    /// Marks a job whose trigger has no fire time left to go once its run has ended, instead
    /// of now: its retries need its task.
    pub(crate) fn finish_after_run(&mut self) {
        self.extras.get_or_insert_with(Box::default).finished = true;
    }

    /// The name given with `.name(..)`, if any.
    pub(crate) fn given_name(&self) -> Option<&Arc<str>> {
        self.extras.as_ref()?.name.as_ref()
    }

    /// The name given, else the task's default name (its function's, or the job's id for a
    /// closure).
    pub(crate) fn name(&self) -> &str {
        match (self.given_name(), self.task.name()) {
            (Some(name), _) => name,
            (None, Some(name)) => name,
            (None, None) => &self.id,
        }
    }

    pub(crate) fn set_name(&mut self, name: Arc<str>) {
        let run = self.run_control();
        self.set_extras(Some(name), run);
    }

    /// The job's timeout and retry policy, if it has either.
    pub(crate) fn run_control(&self) -> Option<RunControl> {
        self.extras.as_ref()?.run
    }

    /// The job's options, all of them.
    pub(crate) fn options(&self) -> JobOptions {
        let options = JobOptions::from(self.options);
        match self.run_control() {
            Some(run) => options.timeout(run.timeout).retry(run.retry),
            None => options,
        }
    }

    pub(crate) fn set_options(&mut self, options: JobOptions) {
        self.options = Admission::from(options);
        let name = self.given_name().cloned();
        self.set_extras(name, options.run_control());
    }

    pub(crate) fn snapshot(&self, default_zone: Zone, store: &Arc<str>) -> Job {
        let zone = self.trigger.timezone().unwrap_or(default_zone);
        Job::new(
            self.id.clone(),
            self.name().to_string(),
            self.trigger.clone(),
            self.next.map(|n| n.at().with_timezone(&zone)),
            self.options(),
            Arc::clone(store),
            self.task.registered().map(|(task, _)| task),
        )
    }
}

/// The job table: a slab of entries addressed by [`Key`]s. A slab rather than a map: no
/// hashing, and entries sit in arrays instead of one allocation each. The arrays are fixed-size
/// chunks, never moved or regrown, so a growing table leaves no freed copies of itself behind
/// in the process's memory.
#[derive(Default)]
pub(crate) struct JobTable {
    chunks: Vec<Box<[Slot]>>,
    len: usize,
    /// Jobs by store index, for the `apsched_jobs` gauge.
    #[cfg(feature = "metrics")]
    by_store: Vec<usize>,
}

const CHUNK: usize = 1024;

/// The generation and the run count sit beside the entry, in what would be its padding.
#[derive(Default)]
pub(crate) struct Slot {
    entry: Option<Entry>,
    /// The key's tag (store and generation) the entry was inserted under.
    tag: u32,
    /// Runs of this slot's job under way, for `max_instances`.
    running: u32,
}

impl JobTable {
    fn slot(&self, key: Key) -> Option<&Slot> {
        let index = key.slot();
        let slot = self.chunks.get(index / CHUNK).map(|c| &c[index % CHUNK])?;
        (slot.tag == key.tag()).then_some(slot)
    }

    fn slot_mut(&mut self, key: Key) -> Option<&mut Slot> {
        let index = key.slot();
        let slot = self
            .chunks
            .get_mut(index / CHUNK)
            .map(|c| &mut c[index % CHUNK])?;
        (slot.tag == key.tag()).then_some(slot)
    }

    pub(crate) fn get(&self, key: Key) -> Option<&Entry> {
        self.slot(key)?.entry.as_ref()
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut Entry> {
        self.slot_mut(key)?.entry.as_mut()
    }

    /// The entry and its count of runs under way.
    pub(crate) fn get_with_running(&mut self, key: Key) -> Option<(&mut Entry, &mut u32)> {
        let slot = self.slot_mut(key)?;
        let entry = slot.entry.as_mut()?;
        Some((entry, &mut slot.running))
    }

    pub(crate) fn insert(&mut self, key: Key, entry: Entry) {
        let index = key.slot();
        while self.chunks.len() <= index / CHUNK {
            self.chunks
                .push((0..CHUNK).map(|_| Slot::default()).collect());
        }
        let slot = &mut self.chunks[index / CHUNK][index % CHUNK];
        // The store sits in the tag's top 8 bits (see `Key`).
        #[cfg(feature = "metrics")]
        let replaced = slot
            .entry
            .is_some()
            .then_some((slot.tag >> 24) as StoreIndex);
        slot.tag = key.tag();
        slot.running = 0;
        if slot.entry.replace(entry).is_none() {
            self.len += 1;
        }
        #[cfg(feature = "metrics")]
        self.count_store(key.store(), replaced);
    }

    /// Drops the entry in place (it is large: moving it out costs) and returns its id.
    pub(crate) fn remove(&mut self, key: Key) -> Option<JobId> {
        let slot = self.slot_mut(key)?;
        let id = slot.entry.take()?.id;
        self.len -= 1;
        #[cfg(feature = "metrics")]
        self.uncount_store(key.store());
        Some(id)
    }

    /// One more job in `store`, one fewer in `replaced` (the store of an entry it took the
    /// place of).
    #[cfg(feature = "metrics")]
    fn count_store(&mut self, store: StoreIndex, replaced: Option<StoreIndex>) {
        let store = usize::from(store);
        if self.by_store.len() <= store {
            self.by_store.resize(store + 1, 0);
        }
        self.by_store[store] += 1;
        if let Some(replaced) = replaced {
            self.uncount_store(replaced);
        }
    }

    #[cfg(feature = "metrics")]
    fn uncount_store(&mut self, store: StoreIndex) {
        if let Some(count) = self.by_store.get_mut(usize::from(store)) {
            *count = count.saturating_sub(1);
        }
    }

    /// How many jobs each store holds, by store index (a store past the end holds none).
    #[cfg(feature = "metrics")]
    pub(crate) fn by_store(&self) -> &[usize] {
        &self.by_store
    }

    /// How many jobs the table holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether a due-queue item for `key` at `at_us` is current: the job is there, and its
    /// next run is still that one.
    pub(crate) fn is_due_at(&self, key: Key, at_us: i64) -> bool {
        self.get(key)
            .and_then(|entry| entry.next)
            .is_some_and(|next| next.at().timestamp_micros() == at_us)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &Entry)> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .enumerate()
            .filter_map(|(i, slot)| {
                let key = Key(i as u64 | (u64::from(slot.tag) << 32));
                slot.entry.as_ref().map(|entry| (key, entry))
            })
    }

    pub(crate) fn keys(&self) -> Vec<Key> {
        self.iter().map(|(key, _)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::Interval;

    fn entry(id: &str) -> Entry {
        Entry::new(
            JobId::new(id),
            None,
            crate::IntoTask::into_task(|| async {}),
            Interval::hours(1).into(),
            JobOptions::default(),
            None,
        )
    }

    /// The per-job memory goal (300 bytes of RSS a job at 100,000 jobs) leaves the job table
    /// 136 bytes a slot (it is 128): a field added here must pay for itself elsewhere.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_job_slot_stays_within_its_budget() {
        assert!(std::mem::size_of::<Slot>() <= 128);
        assert!(std::mem::size_of::<Trigger>() <= 48);
    }

    #[test]
    fn a_reused_slot_never_answers_to_its_old_key() {
        let (mut index, mut table) = (Index::default(), JobTable::default());
        let (old, _) = index.enter(JobId::new("a"), 0, false).unwrap();
        table.insert(old, entry("a"));
        assert_eq!(table.remove(old), Some(JobId::new("a")));
        index.release(old, &JobId::new("a"));
        let (new, replaced) = index.enter(JobId::new("b"), 0, false).unwrap();
        assert_eq!(replaced, None);
        assert_eq!(new.slot(), old.slot(), "the slot is reused");
        table.insert(new, entry("b"));
        assert!(table.get(old).is_none());
        assert_eq!(table.remove(old), None);
        assert_eq!(table.get(new).map(|e| e.id.to_string()), Some("b".into()));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn releasing_an_old_key_keeps_the_newer_job_of_the_id() {
        let mut index = Index::default();
        let (first, _) = index.enter(JobId::new("a"), 0, false).unwrap();
        assert!(index.enter(JobId::new("a"), 0, false).is_none(), "taken");
        let (second, replaced) = index.enter(JobId::new("a"), 0, true).unwrap();
        assert_eq!(replaced, Some(first));
        index.release(first, &JobId::new("a"));
        assert_eq!(index.key_of("a"), Some(second));
        assert_eq!(index.len(), 1);
    }
}
