//! The farm's protocol on its private communicator: the root deals chunks and collects outputs ([`Master`]), the
//! other ranks run chunks ([`work`]).
//!
//! A worker keeps [`DEPTH`] requests outstanding, so the next chunk is already there when it finishes one: its
//! request travels while it computes, and a root that computes too answers between two of its own tasks without
//! the worker waiting for it. Every message of a worker (the first `DEPTH` empty, then one per chunk, carrying
//! the chunk's output) is a request; the root answers each with a chunk or `Stop`. A worker is done when every
//! request it made was answered and the last answer was `Stop`; the root knows it from the counts. Messages on the
//! pair are non-overtaking, so outputs arrive in the order the chunks were dealt to that worker.

use std::collections::VecDeque;
use std::time::Instant;

use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::schedule::{Chunk, Dealer, Schedule};
use super::{Farm, FarmStats, Kind, TaskScope, Tasks};
use crate::error::{Error, ErrorKind, Result};
use crate::p2p::{ANY_SOURCE, Tag};
use crate::request::{Completion, SendRequest};

/// Worker → root: a request, with the output of the chunk it finished (none in the first [`DEPTH`]).
const TAG_REPORT: Tag = 1;
/// Root → worker: a chunk to run, or `Stop`.
const TAG_WORK: Tag = 2;
/// Requests each worker keeps outstanding.
const DEPTH: usize = 2;

#[derive(Serialize, Deserialize)]
struct Report<O> {
    out: Option<O>,
}

/// A chunk as the root sends it: the inputs by reference (bincode writes `&T` as `T`).
#[derive(Serialize)]
enum WorkOut<'a, T> {
    Run { chunk: Chunk, items: Vec<&'a T> },
    Stop,
}

/// The same message as a worker decodes it.
#[derive(Deserialize)]
enum WorkIn<T> {
    Run { chunk: Chunk, items: Vec<T> },
    Stop,
}

/// What one rank did, exchanged by every rank at the end of an operation.
#[derive(Serialize, Deserialize, Default)]
struct Tally {
    tasks: usize,
    chunks: usize,
    busy: f64,
    /// Root only: the operation's wall time.
    elapsed: f64,
    /// Root only: a misuse every rank must report.
    error: Option<String>,
    /// Root only: the schedule followed and whether the root computed (settings that matter at the root).
    schedule: Option<Schedule>,
    root_works: bool,
}

/// What a farm operation makes of one chunk of tasks: one output per chunk (the results, or their fold).
pub(crate) trait ChunkWork<T>: Sync {
    type Out: Serialize + DeserializeOwned + Send;
    /// Runs the tasks `(index, input)` of a chunk, on the pool's threads when there is one.
    fn run(&self, tasks: &[(usize, &T)], pool: Option<&rayon::ThreadPool>) -> Self::Out;
}

/// `map`: one result per task, in index order.
pub(crate) struct MapWork<F>(pub(crate) F);

impl<T: Sync, R: Serialize + DeserializeOwned + Send, F: Fn(&T) -> R + Sync> ChunkWork<T> for MapWork<F> {
    type Out = Vec<R>;
    fn run(&self, tasks: &[(usize, &T)], pool: Option<&rayon::ThreadPool>) -> Vec<R> {
        let one = |&(i, x): &(usize, &T)| {
            let _scope = TaskScope::enter(i);
            (self.0)(x)
        };
        match pool {
            Some(p) => p.install(|| tasks.par_iter().map(one).collect()),
            _ => tasks.iter().map(one).collect(),
        }
    }
}

/// `reduce`: the fold of a chunk's results.
pub(crate) struct ReduceWork<F, I, C> {
    pub(crate) f: F,
    pub(crate) identity: I,
    pub(crate) combine: C,
}

impl<T, A, F, I, C> ChunkWork<T> for ReduceWork<F, I, C>
where
    T: Sync,
    A: Serialize + DeserializeOwned + Send,
    F: Fn(&T) -> A + Sync,
    I: Fn() -> A + Sync,
    C: Fn(A, A) -> A + Sync,
{
    type Out = A;
    fn run(&self, tasks: &[(usize, &T)], pool: Option<&rayon::ThreadPool>) -> A {
        let one = |&(i, x): &(usize, &T)| {
            let _scope = TaskScope::enter(i);
            (self.f)(x)
        };
        match pool {
            Some(p) => p.install(|| tasks.par_iter().map(one).reduce(&self.identity, &self.combine)),
            _ => tasks.iter().map(one).fold((self.identity)(), &self.combine),
        }
    }
}

/// Runs `work` over the tasks of `chunk`, given the inputs a worker received (if they travelled), timing it.
fn run_chunk<T, W: ChunkWork<T>>(
    farm: &Farm<'_>,
    tasks: &Tasks<'_, T>,
    work: &W,
    chunk: Chunk,
    received: Option<Vec<T>>,
    tally: &mut Tally,
) -> Result<W::Out> {
    let pool = farm.pool()?;
    let t0 = Instant::now();
    let generated: Vec<T>;
    let items: Vec<(usize, &T)> = match (&tasks.kind, received) {
        (_, Some(owned)) => {
            generated = owned;
            chunk.indices().zip(generated.iter()).collect()
        }
        (Kind::Range { make, .. }, None) => {
            generated = chunk.indices().map(make).collect();
            chunk.indices().zip(generated.iter()).collect()
        }
        (Kind::Root(Some(v)) | Kind::All(v), None) => {
            let mut items = Vec::with_capacity(chunk.len());
            for i in chunk.indices() {
                let Some(x) = v.get(i) else {
                    return Err(Error::new(
                        ErrorKind::SizeMismatch,
                        format!(
                            "farm: task {i} is beyond the {} inputs of rank {} (every rank must pass the same inputs)",
                            v.len(),
                            farm.comm.rank()
                        ),
                    ));
                };
                items.push((i, x));
            }
            items
        }
        (Kind::Root(None), None) => {
            return Err(Error::new(ErrorKind::InvalidArgument, "farm: no inputs for a chunk"));
        }
    };
    let out = work.run(&items, pool);
    tally.busy += t0.elapsed().as_secs_f64();
    tally.tasks += chunk.len();
    Ok(out)
}

/// A rank other than the root: asks for chunks and runs them until told to stop; then the final exchange.
pub(crate) fn work<T, W>(farm: &Farm<'_>, tasks: &Tasks<'_, T>, work: &W) -> Result<FarmStats>
where
    T: Serialize + DeserializeOwned + Sync,
    W: ChunkWork<T>,
{
    let (comm, root) = (&farm.comm, farm.root);
    let mut tally = Tally::default();
    for _ in 0..DEPTH {
        comm.send_obj(root, TAG_REPORT, &Report::<W::Out> { out: None })?;
    }
    let mut outstanding = DEPTH;
    // Reports still on their way: not waited for before the next one, since a large report completes only when
    // the root receives it, which a computing root does between two of its tasks.
    let mut sending: VecDeque<SendRequest<'_>> = VecDeque::new();
    loop {
        let (msg, _) = comm.recv_obj::<WorkIn<T>>(root, TAG_WORK)?;
        outstanding -= 1;
        match msg {
            WorkIn::Stop if outstanding == 0 => break,
            WorkIn::Stop => {}
            WorkIn::Run { chunk, items } => {
                let received = matches!(tasks.kind, Kind::Root(_)).then_some(items);
                let out = run_chunk(farm, tasks, work, chunk, received, &mut tally)?;
                tally.chunks += 1;
                while let Some(front) = sending.front_mut() {
                    if !front.test()? {
                        break;
                    }
                    sending.pop_front();
                }
                sending.push_back(comm.isend_obj(root, TAG_REPORT, &Report { out: Some(out) })?);
                outstanding += 1;
            }
        }
    }
    crate::request::wait_all(sending)?;
    conclude(farm, tally)
}

/// The final exchange of an operation (collective on the farm's communicator): every rank learns the statistics,
/// and the root's verdict on its inputs.
fn conclude(farm: &Farm<'_>, tally: Tally) -> Result<FarmStats> {
    let all: Vec<Tally> = farm.comm.all_gather_obj(&tally)?;
    let root = &all[farm.root];
    let stats = FarmStats {
        schedule: root.schedule.unwrap_or(farm.schedule),
        root: farm.root,
        root_works: root.root_works,
        tasks: all.iter().map(|t| t.tasks).collect(),
        chunks: all.iter().map(|t| t.chunks).collect(),
        busy: all.iter().map(|t| t.busy).collect(),
        elapsed: root.elapsed,
    };
    *farm.last.borrow_mut() = Some(stats.clone());
    match &root.error {
        Some(e) => Err(Error::new(ErrorKind::InvalidArgument, e.clone())),
        None => Ok(stats),
    }
}

/// The root's side of one operation, driven output by output (so results can stream).
pub(crate) struct Master<'s, 'u, T, W: ChunkWork<T>> {
    farm: &'s Farm<'u>,
    tasks: Tasks<'s, T>,
    work: W,
    n: usize,
    dealer: Dealer,
    /// Each rank's place among the computing ranks.
    slot: Vec<Option<usize>>,
    /// Per worker: chunks dealt and not yet reported, with their sends.
    outstanding: Vec<VecDeque<(Chunk, SendRequest<'u>)>>,
    received: Vec<usize>,
    dealt: Vec<usize>,
    live_workers: usize,
    /// The root's own chunk and how many of its tasks ran.
    own: Option<(Chunk, usize)>,
    own_done: bool,
    ready: VecDeque<(Chunk, W::Out)>,
    tally: Tally,
    t0: Instant,
    bar: ProgressBar,
    finished: bool,
}

impl<'s, 'u, T, W> Master<'s, 'u, T, W>
where
    T: Serialize + DeserializeOwned + Sync,
    W: ChunkWork<T>,
{
    pub(crate) fn new(farm: &'s Farm<'u>, tasks: Tasks<'s, T>, work: W) -> Master<'s, 'u, T, W> {
        let p = farm.comm.size();
        let mut tally = Tally::default();
        let n = match &tasks.kind {
            Kind::Root(Some(v)) | Kind::All(v) => v.len(),
            Kind::Range { n, .. } => *n,
            Kind::Root(None) => {
                tally.error = Some(format!("farm: the root (rank {}) passed no inputs", farm.root));
                0
            }
        };
        let computes = farm.root_computes();
        let mut next = 0;
        let slot = (0..p)
            .map(|r| {
                (computes || r != farm.root).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        Master {
            farm,
            work,
            n,
            dealer: Dealer::new(farm.schedule, n, next).holding(DEPTH),
            slot,
            outstanding: (0..p).map(|_| VecDeque::new()).collect(),
            received: vec![0; p],
            dealt: vec![0; p],
            live_workers: p - 1,
            own: None,
            own_done: !computes,
            ready: VecDeque::new(),
            tally,
            t0: Instant::now(),
            bar: farm.progress_bar(n),
            finished: false,
            tasks,
        }
    }

    /// What is done with each chunk.
    pub(crate) fn work(&self) -> &W {
        &self.work
    }

    /// The number of tasks.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The next chunk output (in the order they complete), or `None` once every task ran and the operation ended.
    pub(crate) fn next_output(&mut self) -> Result<Option<(Chunk, W::Out)>> {
        loop {
            if let Some(x) = self.ready.pop_front() {
                return Ok(Some(x));
            }
            if self.finished {
                return Ok(None);
            }
            if !self.own_done {
                // Answer whoever is waiting, then run one task of the root's own.
                while self.live_workers > 0 && self.farm.comm.iprobe(ANY_SOURCE, TAG_REPORT)?.is_some() {
                    self.serve_one()?;
                }
                self.run_own()?;
            } else if self.live_workers > 0 {
                self.serve_one()?;
            } else {
                self.finish()?;
            }
        }
    }

    /// Stops dealing: the chunks already dealt complete, their outputs are dropped, and the operation ends.
    pub(crate) fn cancel(&mut self) -> Result<()> {
        self.dealer.cancel();
        self.own = None;
        self.own_done = true;
        while self.next_output()?.is_some() {}
        Ok(())
    }

    /// Receives one worker message, takes its output, and answers it.
    fn serve_one(&mut self) -> Result<()> {
        let comm = &self.farm.comm;
        let (report, st) = comm.recv_obj::<Report<W::Out>>(ANY_SOURCE, TAG_REPORT)?;
        let w = st.source();
        self.received[w] += 1;
        if let Some(out) = report.out {
            let Some((chunk, send)) = self.outstanding[w].pop_front() else {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("farm: rank {w} reported a chunk it was never given"),
                ));
            };
            send.wait()?;
            self.bar.inc(chunk.len() as u64);
            self.ready.push_back((chunk, out));
        }
        let slot = self.slot[w].expect("every rank but the root computes");
        match self.dealer.next_for(slot) {
            Some(chunk) => {
                let items = match &self.tasks.kind {
                    Kind::Root(Some(v)) => chunk.indices().map(|i| &v[i]).collect(),
                    _ => Vec::new(),
                };
                let send = comm.isend_obj(w, TAG_WORK, &WorkOut::Run { chunk, items })?;
                self.outstanding[w].push_back((chunk, send));
                self.dealt[w] += 1;
            }
            None => {
                comm.send_obj(w, TAG_WORK, &WorkOut::<T>::Stop)?;
                if self.received[w] == DEPTH + self.dealt[w] {
                    self.live_workers -= 1;
                }
            }
        }
        Ok(())
    }

    /// Runs the next task of the root's own share (on a thread pool, the next task for each thread).
    fn run_own(&mut self) -> Result<()> {
        let (chunk, done) = match self.own {
            Some(own) => own,
            None => match self.dealer.next_for(self.slot[self.farm.root].unwrap_or(0)) {
                Some(c) => {
                    self.tally.chunks += 1;
                    (c, 0)
                }
                None => {
                    self.own_done = true;
                    return Ok(());
                }
            },
        };
        // As many tasks as there are threads, then the root answers requests again.
        let part = chunk.part(done, self.farm.threads);
        let out = run_chunk(self.farm, &self.tasks, &self.work, part, None, &mut self.tally)?;
        let done = done + part.len();
        self.own = (done < chunk.len()).then_some((chunk, done));
        self.bar.inc(part.len() as u64);
        self.ready.push_back((part, out));
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        self.bar.finish_and_clear();
        self.tally.elapsed = self.t0.elapsed().as_secs_f64();
        self.tally.schedule = Some(self.farm.schedule);
        self.tally.root_works = self.farm.root_computes();
        conclude(self.farm, std::mem::take(&mut self.tally)).map(|_| ())
    }
}
