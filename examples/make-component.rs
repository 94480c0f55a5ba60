//! Turns a WASI preview 1 command module (binary `.wasm` or `.wat` text) into a WASI preview 2
//! component, with the preview1 command adapter of the same wasmtime release as amphi.
//!
//! Usage: `cargo run --example make-component -- IN.wat|IN.wasm OUT.wasm`

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        eprintln!("usage: make-component IN.wat|IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    match build(input, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make-component: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(input: &str, output: &str) -> anyhow::Result<()> {
    let module = wat::parse_file(input)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(output, component)?;
    Ok(())
}
