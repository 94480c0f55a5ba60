//! The `amphi` binary, the one engines call: parse the command line, set up logging, dispatch.
//! Nothing else.
//!
//! It serves every subcommand whose process never enters a container (`start`, `state`, `kill`,
//! `delete`, `list`, `ps`, `pause`, `resume`, `events`, `update`, `spec`, `features`) and hands
//! `create`, `run` and `exec` to `amphi-full`, installed next to it
//! ([`amphi::security::exe::exec_full`]). This binary links neither the create pipeline nor
//! wasmtime: it is a quarter of the size of `amphi-full`, and a start of it costs about 0.5 ms of
//! CPU less (fewer relocations to apply, fewer pages to fault in). A create+start+delete cycle
//! starts amphi four times, and three of those starts are this binary's.

fn main() {
    std::process::exit(amphi::cli::front_main());
}
