//! Hello from every rank: rank, size, host and the granted MPI thread level.
//!
//! ```text
//! mpirun -n 4 target/release/examples/hello
//! ```
//!
//! Rank 0 gathers one line from every rank (an object gather) and prints them in rank order, so the output is
//! the same whatever order the ranks run in.

fn main() -> spmd::Result<()> {
    let universe = spmd::init()?;
    let world = universe.world();
    let line = format!(
        "hello from rank {} of {} on {} (thread level {})",
        world.rank(),
        world.size(),
        universe.processor_name()?,
        universe.thread_level()
    );
    if let Some(lines) = world.gather_obj(0, &line)? {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}
