//! The `amphi-full` binary: the whole of amphi, with the create pipeline and both executors (Linux
//! and Wasm). `amphi` runs it for `create`, `run` and `exec`; it serves every other subcommand too,
//! so it also works alone under any name.

fn main() {
    std::process::exit(amphi::cli::main());
}
