//! Compiles `src/sys/shim.c`, which hands spmd the MPI constants that bindgen cannot see (macros such as
//! `MPI_IN_PLACE`, `MPI_MINLOC`, the pair datatypes), with the same MPI compiler wrapper the `mpi` crate uses, so
//! the values are those of whichever MPI (Open MPI, MPICH) the crate is built against.

fn main() {
    println!("cargo:rerun-if-changed=src/sys/shim.c");
    println!("cargo:rerun-if-env-changed=MPICC");
    println!("cargo:rerun-if-env-changed=MPI_PKG_CONFIG");
    let lib = match build_probe_mpi::probe() {
        Ok(lib) => lib,
        Err(errs) => {
            for e in errs {
                println!("cargo:warning=MPI probe: {e}");
            }
            panic!("no MPI library found: install Open MPI or MPICH with its headers (libopenmpi-dev, libmpich-dev)");
        }
    };
    let mut build = cc::Build::new();
    build.file("src/sys/shim.c");
    if let Some(mpicc) = lib.mpicc {
        build.compiler(mpicc);
    } else {
        for inc in &lib.include_paths {
            build.include(inc);
        }
    }
    build.compile("spmd_shim");
}
