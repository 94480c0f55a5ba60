//! The `amphi` binary: parse the command line, set up logging, dispatch. Nothing else.

fn main() {
    std::process::exit(amphi::cli::main());
}
