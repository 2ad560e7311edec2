//! Hybrid-mode cases: thread counts from the CPUs each rank has, node information, node-shared arrays,
//! hierarchical collectives and reproducible threaded sums. Shared by the hybrid tests and the simulated cluster.

use spmd::hybrid::{Hybrid, NodeArray, Strategy, Threads};
use spmd::{Comm, ErrorKind, Op};

use crate::common::{Case, special, world_case};

/// This process's CPUs as the kernel reports them in `/proc/self/status` (independently of the library).
pub fn proc_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()).collect::<Vec<_>>(),
            None => vec![part.parse::<usize>().unwrap()],
        })
        .collect()
}

/// The expected automatic thread count: CPUs of the mask, a CPU shared by k ranks of the node counting 1/k.
fn expected_threads(comm: &Comm) -> spmd::Result<usize> {
    let node = comm.split_shared()?;
    let mine = proc_cpus();
    let all = node.all_gather_obj(&mine)?;
    let share: f64 = mine
        .iter()
        .map(|c| 1.0 / all.iter().filter(|m| m.contains(c)).count() as f64)
        .sum();
    Ok((share + 1e-9).floor().max(1.0) as usize)
}

/// Each rank's pool has as many threads as it has CPUs to itself (run under several bindings); prints them.
fn layout(comm: &Comm) -> spmd::Result<()> {
    let want = match std::env::var("SPMD_TEST_THREADS").ok().and_then(|v| v.parse().ok()) {
        Some(n) => n,
        None => expected_threads(comm)?,
    };
    let h = Hybrid::new(comm, Threads::Auto)?;
    println!(
        "layout rank {} cpus {:?} threads {} pool {} global {}",
        comm.rank(),
        h.cpus(),
        h.threads(),
        h.pool().current_num_threads(),
        rayon::current_num_threads()
    );
    check!(
        comm,
        h.cpus() == proc_cpus(),
        "cpus {:?} vs /proc {:?}",
        h.cpus(),
        proc_cpus()
    );
    check!(comm, h.threads() == want, "{} threads, {want} expected", h.threads());
    check!(
        comm,
        h.pool().current_num_threads() == want,
        "pool of {}",
        h.pool().current_num_threads()
    );
    check!(
        comm,
        rayon::current_num_threads() == want,
        "global pool of {}",
        rayon::current_num_threads()
    );
    let layout = h.layout(0)?;
    if let Some(l) = layout {
        println!("{l}");
        check!(comm, l.ranks.iter().all(|r| r.threads >= 1), "{l}");
    }
    Ok(())
}

/// Node information agrees with the shared-memory split and the host names.
fn node_info(comm: &Comm) -> spmd::Result<()> {
    let h = Hybrid::new(comm, Threads::Exactly(1))?;
    let info = h.node().clone();
    let all = comm.all_gather_obj(&info)?;
    let hosts: std::collections::BTreeSet<&String> = all.iter().map(|i| &i.host).collect();
    check!(
        comm,
        info.nodes == hosts.len(),
        "{} nodes for hosts {hosts:?}",
        info.nodes
    );
    check!(comm, info.local_size == h.node_comm().size(), "local size");
    check!(
        comm,
        all.iter().filter(|i| i.node == info.node).count() == info.local_size,
        "{all:?}"
    );
    check!(comm, (h.leaders().is_some()) == (info.local_rank == 0), "leaders");
    if let Some(l) = h.leaders() {
        check!(
            comm,
            l.size() == info.nodes && l.rank() == info.node,
            "leaders communicator"
        );
    }
    if let Some(hint) = spmd::hybrid::local_rank_hint() {
        check!(
            comm,
            hint == info.local_rank,
            "launcher says local rank {hint}, MPI {}",
            info.local_rank
        );
    }
    Ok(())
}

/// A node-shared array: one allocation per node, every rank sees the others' writes, bad ranges are refused.
fn node_array(comm: &Comm) -> spmd::Result<()> {
    let h = Hybrid::new(comm, Threads::Exactly(1))?;
    let node = h.node().clone();
    let len = 1001;
    let mut a = NodeArray::<u64>::new(comm, len)?;
    check!(comm, a.as_slice().iter().all(|&x| x == 0), "not zeroed");
    // Only the node's first rank allocates, and a node holds one copy.
    let here = a.allocated_bytes();
    check!(
        comm,
        (here > 0) == (node.local_rank == 0),
        "rank allocated {here} bytes"
    );
    let per_node = h.node_comm().all_reduce_scalar(here as u64, Op::Sum)?;
    check!(
        comm,
        per_node >= (len * 8) as u64 && per_node < (len * 8 + 64) as u64,
        "{per_node} bytes per node"
    );
    // Each rank writes its part; afterwards every rank reads every part.
    let tag = |node: usize, k: usize| (node * 1_000_000 + k) as u64 * 3 + 1;
    a.write_part(|start, part| {
        for (i, x) in part.iter_mut().enumerate() {
            *x = tag(node.node, start + i);
        }
    })?;
    for (k, &x) in a.as_slice().iter().enumerate() {
        check!(comm, x == tag(node.node, k), "element {k} is {x} on node {}", node.node);
    }
    // The leader refills; the others see it.
    a.fill_on_leader(|all| all.iter_mut().for_each(|x| *x = node.node as u64 + 7))?;
    check!(
        comm,
        a.as_slice().iter().all(|&x| x == node.node as u64 + 7),
        "leader's fill"
    );
    let v = a.view([7, 143])?;
    check!(comm, v[[6, 142]] == node.node as u64 + 7, "view");
    let e = a.view([2, 2]).expect_err("wrong shape");
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "{e}");
    // Overlapping ranges: refused on every rank before anything is written.
    if node.local_size > 1 {
        let e = a.write(0..10, |s| s.fill(99)).expect_err("overlap");
        check!(
            comm,
            e.kind() == ErrorKind::InvalidArgument && e.to_string().contains("overlapping"),
            "{e}"
        );
        check!(
            comm,
            a.as_slice()[0] == node.node as u64 + 7,
            "written despite the error"
        );
    }
    let e = a.write(0..len + 1, |_| ()).expect_err("out of bounds");
    check!(comm, e.to_string().contains("asked for elements"), "{e}");
    // Different nodes hold different copies: the value seen is this node's own.
    let seen = comm.all_gather_obj(&(node.node, a.as_slice()[len - 1]))?;
    check!(comm, seen.iter().all(|&(n, x)| x == n as u64 + 7), "{seen:?}");
    Ok(())
}

/// A write phase keeps pending receives moving: rank 0 waits in a phase while rank 1 is still sending it a large
/// object that rank 0's pending receive must take first (with blocking phase collectives, both waited forever).
fn node_array_pending_receive(comm: &Comm) -> spmd::Result<()> {
    let node = comm.split_shared()?;
    let mut a = NodeArray::<u64>::new(comm, 64)?;
    if node.size() < 2 || comm.rank() > 1 {
        a.write_part(|_, part| part.fill(1))?;
        return Ok(());
    }
    let big: Vec<f64> = (0..1 << 18).map(f64::from).collect(); // 2 MiB: sent by rendezvous
    let mut pending = None;
    if comm.rank() == 0 {
        pending = Some(comm.irecv_obj::<Vec<f64>>(1, 9)?);
    } else {
        comm.send_obj(0, 9, &big)?;
    }
    a.write_part(|_, part| part.fill(1))?;
    if let Some(r) = pending {
        let (got, _) = spmd::request::Completion::wait(r)?;
        check!(comm, got == big, "the object received during the write phase differs");
    }
    check!(comm, a.as_slice().iter().all(|&x| x == 1), "write phase");
    Ok(())
}

/// Hierarchical and flat all-reduce and broadcast agree (integers: exactly), from every root.
fn hierarchical(comm: &Comm) -> spmd::Result<()> {
    let mut h = Hybrid::new(comm, Threads::Exactly(1))?;
    let tuned = h.tune_all_reduce()?;
    check!(comm, tuned.len() == 4 && tuned[3].0 == usize::MAX, "{tuned:?}");
    let all = comm.all_gather_obj(&tuned)?;
    check!(
        comm,
        all.iter().all(|t| *t == tuned),
        "ranks decided differently: {all:?}"
    );
    let send: Vec<i64> = (0..1000).map(|i| (i * (comm.rank() as i64 + 1)) % 97).collect();
    let (mut flat, mut hier) = (vec![0i64; 1000], vec![0i64; 1000]);
    for op in [Op::Sum, Op::Max, Op::Min] {
        h.all_reduce_buf_with(Strategy::Flat, &send[..], &mut flat[..], op)?;
        h.all_reduce_buf_with(Strategy::Hierarchical, &send[..], &mut hier[..], op)?;
        check!(comm, flat == hier, "{op:?} differs");
        h.all_reduce_buf(&send[..], &mut hier[..], op)?;
        check!(comm, flat == hier, "{op:?} (auto) differs");
    }
    for root in 0..comm.size() {
        let mut buf: Vec<u32> = if comm.rank() == root {
            (0..777).map(|i| i * 3 + root as u32).collect()
        } else {
            vec![0; 777]
        };
        h.broadcast_buf_with(Strategy::Hierarchical, root, &mut buf[..])?;
        check!(
            comm,
            buf.iter().enumerate().all(|(i, &x)| x == i as u32 * 3 + root as u32),
            "root {root}"
        );
    }
    let e = h
        .broadcast_buf_with(Strategy::Hierarchical, comm.size(), &mut [0u8][..])
        .expect_err("bad root");
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "{e}");
    Ok(())
}

/// A threaded sum has the same bits for 1, 2 and 3 threads.
fn reproducible(comm: &Comm) -> spmd::Result<()> {
    let data: Vec<f64> = (0..300_000)
        .map(|i| ((i * 7919 + comm.rank()) % 1013) as f64 * 1e-3 + 1e8)
        .collect();
    let sums: Vec<u64> = (1..=3)
        .map(|t| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("pool");
            spmd::hybrid::sum_reproducible(&pool, &data).to_bits()
        })
        .collect();
    check!(comm, sums.windows(2).all(|w| w[0] == w[1]), "{sums:?}");
    let h = Hybrid::new(comm, Threads::Exactly(2))?;
    check!(comm, h.sum_reproducible(&data).to_bits() == sums[0], "hybrid pool");
    check!(
        comm,
        h.threads() == 2 && h.pool().current_num_threads() == 2,
        "explicit count"
    );
    let e = Hybrid::new(comm, Threads::Exactly(0)).expect_err("zero threads");
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "{e}");
    Ok(())
}

pub const CASES: &[Case] = &[
    special("layout", layout),
    world_case("node_info", node_info),
    world_case("node_array", node_array),
    world_case("node_array_pending_receive", node_array_pending_receive),
    world_case("hierarchical", hierarchical),
    world_case("reproducible", reproducible),
];
